//! `ringbus serve` with a durable topic journals what `ringbus pub`
//! publishes; `ringbus journal info` reports it and `ringbus journal
//! export` writes a range of it to an MCAP file the `mcap` crate reads
//! back, every message intact; bad requests get clear errors.

mod common;

use std::path::Path;

use common::*;

const N: u64 = 5_000;

/// `ringbus journal SUBCOMMAND TOPIC --config CONFIG ARGS...`
fn journal(dir: &TestDir, config: &Path, args: &[&str]) -> std::process::Command {
    let mut c = ringbus(&dir.socket());
    c.arg("journal")
        .args(&args[..2])
        .arg("--config")
        .arg(config)
        .args(&args[2..]);
    c
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_durable_topic_is_journaled_reported_and_exported() {
    let dir = TestDir::new("journal-cli");
    let config = dir.path("ringbus.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
journal_dir = "{}"

[[topic]]
name = "d.trades"
mode = "backpressure"
capacity = 256
max_message_size = 128
durable = true
fsync = "interval:1ms"
"#,
            dir.path("journal").display()
        ),
    )
    .unwrap();
    let _broker = BrokerProc::start(&dir, Some(&config));
    let out = ringbus(&dir.socket())
        .args([
            "pub",
            "d.trades",
            "--count",
            &N.to_string(),
            "--size",
            "100",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    ok(out);

    let info = eventually("the journal to hold every message", || {
        let out = journal(&dir, &config, &["info", "d.trades", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
        (v[0]["records"] == N).then_some(v)
    });
    assert_eq!(info.as_array().unwrap().len(), 1, "{info}");
    assert_eq!(info[0]["first_seq"], 0);
    assert_eq!(info[0]["last_seq"], N - 1);
    assert_eq!(info[0]["corrupt_skipped"], 0);

    // A range, to MCAP.
    let file = dir.path("range.mcap");
    ok(journal(
        &dir,
        &config,
        &[
            "export",
            "d.trades",
            "--from-seq",
            "1000",
            "--to-seq",
            "1999",
            "-o",
        ],
    )
    .arg(&file)
    .output()
    .unwrap());
    let bytes = std::fs::read(&file).unwrap();
    let mut seqs = Vec::new();
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        let m = m.unwrap();
        assert_eq!(m.channel.topic, "d.trades");
        assert_eq!(m.channel.message_encoding, "ringbus.framed");
        let seq = u64::from_le_bytes(m.data[..8].try_into().unwrap());
        assert_eq!(check_generated(&m.data[16..]), seq);
        seqs.push(seq);
    }
    assert_eq!(seqs, (1000..2000).collect::<Vec<_>>());

    // Everything journaled within the last hour.
    ok(journal(
        &dir,
        &config,
        &["export", "d.trades", "--since", "1h", "-o"],
    )
    .arg(&file)
    .output()
    .unwrap());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(mcap::MessageStream::new(&bytes).unwrap().count() as u64, N);

    // Bad requests.
    for (args, says) in [
        (vec!["info", "d.none"], "no journal of topic \"d.none\""),
        (vec!["info", "bad..name"], "bad topic"),
        (
            vec![
                "export",
                "d.trades",
                "--from-seq",
                "9",
                "--to-seq",
                "3",
                "-o",
                "x.mcap",
            ],
            "--from-seq 9 is after --to-seq 3",
        ),
        (
            vec!["export", "d.trades", "--since", "10parsecs", "-o", "x.mcap"],
            "needs a unit",
        ),
    ] {
        let out = journal(&dir, &config, &args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}
