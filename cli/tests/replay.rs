//! `ringbus sub --from-seq N` and `--since AGE` on a durable topic read
//! what its ring no longer holds from the journal, then the live ring;
//! bad values are refused clearly.

mod common;

use common::*;
use ringbus::client::Client;

fn config(dir: &TestDir) -> std::path::PathBuf {
    let config = dir.path("ringbus.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\njournal_dir = \"{}\"\n\n[[topic]]\nname = \"cli.durable\"\nmode = \"backpressure\"\ncapacity = 16\nmax_message_size = 64\ndurable = true\nfsync = \"interval:1ms\"\n",
            dir.path("journal").display()
        ),
    )
    .unwrap();
    config
}

/// The sequence numbers `ringbus sub ARGS --json` printed.
fn seqs(out: &std::process::Output) -> Vec<u64> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["text"].as_str().unwrap(), format!("m{}", v["seq"]));
            v["seq"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn sub_from_a_sequence_or_an_age_replays_the_journal() {
    let dir = TestDir::new("cli-replay");
    let config = config(&dir);
    let _broker = BrokerProc::start(&dir, Some(&config));
    let client = Client::connect(dir.socket()).unwrap();
    let mut publisher = client.publisher_existing("cli.durable").unwrap();
    for i in 0..300u64 {
        publisher.publish(format!("m{i}").as_bytes(), 0).unwrap();
    }
    let sub = |args: &[&str]| {
        ringbus(&dir.socket())
            .args(["sub", "cli.durable", "--json"])
            .args(args)
            .output()
            .unwrap()
    };
    let all: Vec<u64> = (0..300).collect();
    assert_eq!(seqs(&sub(&["--from-seq", "0", "--count", "300"])), all);
    assert_eq!(
        seqs(&sub(&["--from-seq", "120", "--count", "180"])),
        all[120..]
    );
    assert_eq!(seqs(&sub(&["--since", "1h", "--count", "300"])), all);

    for (args, says) in [
        (&["--since", "10x"][..], "needs a unit"),
        (&["--since", "@soon"][..], "@SECONDS"),
        (
            &["--from-seq", "1", "--from", "earliest"][..],
            "cannot be used with",
        ),
    ] {
        let out = sub(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = ringbus(&dir.socket())
        .args(["sub", "other.topic", "--since", "1m", "--count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not durable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
