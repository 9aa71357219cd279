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
fn an_import_queue_out_of_range_is_refused() {
    for n in ["0", "1048577"] {
        let e = refused(&["--import", "cmd.>", "--import-queue", n]);
        assert!(e.contains("import_queue"), "{e}");
    }
    let e = refused(&["--import", "cmd.>", "--import-queue", "many"]);
    assert!(e.contains("--import-queue"), "{e}");
}
