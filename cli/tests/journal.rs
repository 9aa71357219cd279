//! `ringbus serve` with a durable topic journals what `ringbus pub`
//! publishes; `ringbus journal info` reports it and `ringbus journal
//! export` writes a range of it to an MCAP file the `mcap` crate reads
//! back, every message intact; bad requests get clear errors. A broker
//! killed (-9) while a publisher streams into a durable topic loses
//! nothing: the recorder's port outlives it, and the next broker's
//! recorder goes on from its cursor.

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

fn write_config(dir: &TestDir, capacity: u32, fsync: &str) -> std::path::PathBuf {
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
capacity = {capacity}
max_message_size = 128
durable = true
fsync = "{fsync}"
"#,
            dir.path("journal").display()
        ),
    )
    .unwrap();
    config
}

/// `ringbus journal info --json`'s rings; null until the journal exists.
fn info(dir: &TestDir, config: &Path) -> serde_json::Value {
    let out = journal(dir, config, &["info", "d.trades", "--json"])
        .output()
        .unwrap();
    match out.status.success() {
        true => serde_json::from_str(&ok(out)).unwrap(),
        false => serde_json::Value::Null,
    }
}

/// `ringbus topics --json`'s journal counters of d.trades.
fn journal_counters(dir: &TestDir) -> serde_json::Value {
    let out = ok(ringbus(&dir.socket())
        .args(["topics", "--json"])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let t = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "d.trades")
        .unwrap_or_else(|| panic!("d.trades not listed: {v}"))
        .clone();
    t["journal"].clone()
}

/// Every message of the journal, exported to MCAP and checked intact:
/// per ring (channel), its sequence numbers in order.
fn exported(dir: &TestDir, config: &Path) -> Vec<Vec<u64>> {
    let file = dir.path("all.mcap");
    ok(journal(dir, config, &["export", "d.trades", "-o"])
        .arg(&file)
        .output()
        .unwrap());
    let bytes = std::fs::read(&file).unwrap();
    let mut rings: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        let m = m.unwrap();
        let seq = u64::from_le_bytes(m.data[..8].try_into().unwrap());
        assert_eq!(check_generated(&m.data[16..]), seq);
        rings
            .entry(m.channel.metadata["ringbus.ring"].clone())
            .or_default()
            .push(seq);
    }
    rings.into_values().collect()
}

#[test]
fn a_broker_killed_while_a_publisher_streams_loses_nothing_journaled() {
    let dir = TestDir::new("journal-kill9");
    // fsync = always: every message a publish returned for is on disk or
    // still in the ring when the broker dies.
    let config = write_config(&dir, 64, "always");
    let mut broker = BrokerProc::start(&dir, Some(&config));
    const M: u64 = 20_000;
    let mut publisher = KillOnDrop(
        ringbus(&dir.socket())
            .args([
                "pub",
                "d.trades",
                "--count",
                &M.to_string(),
                "--size",
                "100",
            ])
            .args(["--rate", "8000"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("a few thousand messages journaled", || {
        let v = info(&dir, &config);
        (v[0]["records"].as_u64() >= Some(3_000)).then_some(())
    });
    broker.kill9();
    // The publisher runs on, until the dead recorder's cursor (in the
    // keeper's hands) holds it back.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _broker = BrokerProc::start(&dir, Some(&config));
    let status = publisher.0.wait().unwrap();
    assert!(status.success(), "publisher: {status}");
    eventually("every message journaled", || {
        let v = info(&dir, &config);
        (v[0]["records"] == M).then_some(())
    });
    assert_eq!(exported(&dir, &config), vec![(0..M).collect::<Vec<_>>()]);
}

#[test]
fn a_durable_topic_is_journaled_reported_and_exported() {
    let dir = TestDir::new("journal-cli");
    let config = write_config(&dir, 256, "interval:1ms");
    let _broker = BrokerProc::start(&dir, Some(&config));
    // The recorder's counters, listed with the topic, before and after.
    let before = journal_counters(&dir);
    assert_eq!(before["recorded"], 0, "{before}");
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
        let v = info(&dir, &config);
        (v[0]["records"] == N).then_some(v)
    });
    assert_eq!(info.as_array().unwrap().len(), 1, "{info}");
    assert_eq!(info[0]["first_seq"], 0);
    assert_eq!(info[0]["last_seq"], N - 1);
    assert_eq!(info[0]["corrupt_skipped"], 0);
    let after = eventually(
        "the topic's journal counters to count every message",
        || {
            let j = journal_counters(&dir);
            (j["recorded"] == N).then_some(j)
        },
    );
    assert_eq!(
        (&after["lost"], &after["errors"], &after["segments"]),
        (&0.into(), &0.into(), &1.into()),
        "{after}"
    );
    assert_eq!(
        (&after["corrupt"], &after["damaged_segments"]),
        (&0.into(), &0.into())
    );
    // A segment header, then a 48-byte header and 100 bytes, padded to 8,
    // per message.
    assert_eq!(after["bytes"], 32 + N * 152, "{after}");
    let text = ok(ringbus(&dir.socket()).arg("topics").output().unwrap());
    assert!(
        text.contains(&format!("journal recorded {N} lost 0 errors 0")),
        "{text}"
    );

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
