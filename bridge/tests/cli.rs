//! The command line refuses bad settings with a clear error, before it
//! opens a Zenoh session or reaches a broker.

use std::process::Command;

fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringbus-zenoh"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_import_topic_is_refused() {
    let e = refused(&["--import", "cmd.>", "--import-capacity", "3"]);
    assert!(e.contains("import topic config"), "{e}");
    let e = refused(&["--import", "cmd.>", "--import-capacity", "many"]);
    assert!(e.contains("--import-capacity"), "{e}");
}

#[test]
fn a_bad_congestion_or_prefix_is_refused() {
    let e = refused(&["--export", "md.>", "--congestion", "maybe"]);
    assert!(e.contains("--congestion"), "{e}");
    let e = refused(&["--export", "md.>", "--prefix", "a/*"]);
    assert!(e.contains("prefix"), "{e}");
}

#[test]
fn an_import_queue_out_of_range_is_refused() {
    for n in ["0", "1048577"] {
        let e = refused(&["--import", "cmd.>", "--import-queue", n]);
        assert!(e.contains("import_queue"), "{e}");
    }
    let e = refused(&["--import", "cmd.>", "--import-queue", "many"]);
    assert!(e.contains("--import-queue"), "{e}");
}
