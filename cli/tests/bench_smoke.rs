//! `ringbus bench --smoke` end to end: the real binary, its children, the
//! JSON, the `.hgrm` files and the plot. Asserts structure and counts, never
//! times.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringbus-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two CPUs this process may use for the bench's two sides, or, on a
/// one-CPU machine, the one CPU twice (the run then needs
/// `--allow-shared-cpus`: its figures mean nothing, its paths all run).
fn two_cpus() -> (usize, usize, bool) {
    let cpus = ringbus::wait::available_cores();
    match cpus[..] {
        [] => panic!("cannot read this process's CPU set"),
        [only] => (only, only, true),
        [a, b, ..] => (a, b, false),
    }
}

/// Runs the bench with `args`, returning its JSON report and its pid.
fn bench_json(args: &[&str]) -> (serde_json::Value, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_ringbus"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_slice(&out.stdout).expect("valid JSON");
    (json, pid)
}

#[test]
fn smoke_run_writes_json_hgrm_and_plot() {
    let dir = scratch("smoke");
    let plot = dir.join("plot.svg");
    let hgrm = dir.join("hgrm");
    let (plot_s, hgrm_s) = (plot.to_str().unwrap(), hgrm.to_str().unwrap());
    let (a, b, shared) = two_cpus();
    let cpus = format!("{a},{b}");
    let mut args = vec![
        "bench", "--smoke", "--sizes", "8,64", "--runs", "2", "--json", "--plot", plot_s, "--hgrm",
        hgrm_s, "--cpus", &cpus,
    ];
    if shared {
        args.push("--allow-shared-cpus");
    }
    let (json, pid) = bench_json(&args);
    let rows = json["rows"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for want in [
        "floor-line-pingpong",
        "floor-futex-pingpong",
        "base-seqlock-pingpong-64B",
        "base-unix-pingpong-8B",
        "floor-fixedring-throughput-64B",
        "floor-fixedring-latency-8B",
        "floor-copyring-throughput-64B",
        "floor-copyring-latency-8B",
        "base-readonlyring-throughput-64B",
        "ringbus-pingpong-spin-overwrite-64B",
        "ringbus-pingpong-block-backpressure-8B",
        "ringbus-throughput-1to1-adaptive-backpressure-64B",
        "ringbus-latency-1to1-spin-overwrite-8B",
        "ringbus-batch32-throughput-spin-backpressure-64B",
        "ringbus-batch32-throughput-spin-overwrite-8B",
        "ringbus-loan32-throughput-spin-backpressure-64B",
        "ringbus-loan32-throughput-spin-overwrite-8B",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    for r in rows {
        assert_eq!(r["runs"], 2, "{r}");
        // Overwrite-mode subscribers may legitimately be lapped and lose
        // messages; everything else must deliver every measured message.
        let lossy = r["id"].as_str().unwrap().contains("overwrite");
        let expect = |got: u64, want: u64| {
            if lossy {
                assert!(got > 0 && got <= want, "{got} of {want}: {r}");
            } else {
                assert_eq!(got, want, "{r}");
            }
        };
        match r["metric"].as_str().unwrap() {
            "ping-pong" => {
                // Two runs of 2000 measured round trips each, never lossy.
                assert_eq!(r["latency"]["count"], 4000, "{r}");
                assert!(r["rtt"]["p50"].as_f64().unwrap() > 0.0);
                let one_way = r["latency"]["p50"].as_f64().unwrap();
                let rtt = r["rtt"]["p50"].as_f64().unwrap();
                assert!((one_way * 2.0 - rtt).abs() <= 1.0, "{r}");
            }
            "throughput" => {
                let sent = 2 * r["params"]["iters"].as_u64().unwrap();
                let received = r["received"].as_u64().unwrap();
                expect(received, sent);
                assert!(received + r["lost"].as_u64().unwrap() <= sent, "{r}");
                assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0);
            }
            "latency" => expect(r["latency"]["count"].as_u64().unwrap(), 4000),
            m => panic!("unknown metric {m}"),
        }
        let id = r["id"].as_str().unwrap();
        if id.starts_with("ringbus") {
            assert!(
                r["ratio"].as_f64().unwrap() > 0.0,
                "ringbus rows have a floor: {r}"
            );
            // A pattern's, a filter's, a batched or a loaned stream's row
            // is paired with the same row through an exact topic, one
            // message per call, and with nothing else.
            let routed = [
                "ringbus-pattern-",
                "ringbus-filtered-",
                "ringbus-batch",
                "ringbus-loan",
            ]
            .iter()
            .any(|p| id.starts_with(p));
            if routed {
                assert!(
                    r["floor"].as_str().unwrap().starts_with("ringbus spin/"),
                    "{r}"
                );
            }
            // Spin and adaptive ping-pongs sit beside the seqlock one too.
            let beside_seqlock = r["metric"] == "ping-pong" && !id.contains("-block-") && !routed;
            assert_eq!(r["ratio_seqlock"].is_f64(), beside_seqlock, "{r}");
            assert_eq!(r["ratio_seqlock_p99_9"].is_f64(), beside_seqlock, "{r}");
            // Flat-out streams sit beside the copy ring with a read-only
            // reader.
            let beside_read_only = r["metric"] == "throughput" && !routed;
            assert_eq!(r["ratio_read_only_ring"].is_f64(), beside_read_only, "{r}");
        }
        // Streams say how many bytes a message moves between cores: a
        // ring slot (32-byte header + payload, in half lines), a copy ring's
        // slot (the payload; rounded up to 8 in the run-time-length one).
        // The read-only reader's ring is the fixed-size one.
        let size = r["size"].as_u64();
        let want = match (r["metric"].as_str().unwrap(), size) {
            ("ping-pong", _) | (_, None) => None,
            (_, Some(size)) if id.starts_with("ringbus") => Some((32 + size).next_multiple_of(32)),
            (_, Some(size))
                if id.starts_with("floor-fixedring") || id.starts_with("base-readonlyring") =>
            {
                Some(size)
            }
            (_, Some(size)) => Some(size.next_multiple_of(8)),
        };
        assert_eq!(r["bytes_per_msg"].as_u64(), want, "{r}");
    }
    let targets = json["targets"].as_array().unwrap();
    let count = |what: &str| {
        targets
            .iter()
            .filter(|t| t["what"].as_str().unwrap().ends_with(what))
            .count()
    };
    for floor in ["seqlock floor", "cache-line floor (stricter)"] {
        assert_eq!(
            count(&format!("64 B ping-pong p50 / {floor}")),
            2,
            "{floor}"
        );
        assert_eq!(
            count(&format!("64 B ping-pong p99.9 / {floor}")),
            2,
            "{floor}"
        );
    }
    // The other measured size sits beside the seqlock copy of its own
    // size, once per mode; a size not measured has no target.
    assert_eq!(count("8 B ping-pong p50 / seqlock floor"), 2);
    assert_eq!(count("1024 B ping-pong p50 / seqlock floor"), 0);
    let seqlock = rows
        .iter()
        .find(|r| r["id"] == "base-seqlock-pingpong-64B")
        .unwrap();
    assert_eq!(seqlock["floor"], "floor: cache line");
    assert!(seqlock["ratio"].as_f64().unwrap() > 0.0);

    // The summary: 64 B, one line per wait, each figure in both modes
    // beside its floors, the targets' bounds where the issue sets them.
    let summary = &json["summary"];
    assert_eq!(summary["size"], 64);
    let lines = summary["lines"].as_array().unwrap();
    let waits: Vec<&str> = lines.iter().map(|l| l["wait"].as_str().unwrap()).collect();
    assert_eq!(waits, ["spin", "adaptive", "block"]);
    for line in lines {
        for figure in ["ping_pong_p50", "streaming_msgs_per_s"] {
            let f = &line[figure];
            for mode in ["overwrite", "backpressure"] {
                assert!(f["ringbus"][mode].as_f64().unwrap() > 0.0, "{line}");
                for r in f["against"].as_array().unwrap() {
                    assert!(r["ratio"][mode].as_f64().unwrap() > 0.0, "{line}");
                }
            }
        }
        let names = |figure: &str| -> Vec<&str> {
            line[figure]["against"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap())
                .collect()
        };
        let pp = match line["wait"].as_str().unwrap() {
            "spin" => vec!["base: seqlock copy", "floor: cache line"],
            "adaptive" => vec!["base: seqlock copy", "floor: cache line", "ringbus spin"],
            _ => vec!["floor: futex"],
        };
        assert_eq!(names("ping_pong_p50"), pp, "{line}");
        assert_eq!(
            names("streaming_msgs_per_s"),
            [
                "floor: copy ring (fixed size)",
                "base: copy ring (read-only reader)"
            ],
            "{line}"
        );
    }
    let spin_pp = &lines[0]["ping_pong_p50"]["against"][0];
    assert_eq!(spin_pp["bound"]["value"], 1.15);
    assert!(spin_pp["met"]["overwrite"].is_boolean());
    assert!(summary["unix_socket_p50"].as_f64().unwrap() > 0.0);

    let notes = json["notes"].as_array().unwrap();
    assert!(notes
        .iter()
        .any(|n| n.as_str().unwrap().contains("embedded broker")));
    // The embedded broker's directory is gone (other runs' may exist).
    let ours = format!("ringbus-embedded-{pid}-");
    for base in ["/dev/shm".into(), std::env::temp_dir()] {
        let left: Vec<_> = std::fs::read_dir(&base)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&ours))
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "the bench left {left:?} behind");
    }

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.matches("<polyline").count() >= 6);
    let line = std::fs::read_to_string(hgrm.join("floor-line-pingpong-oneway.hgrm")).unwrap();
    assert!(line.contains("Total count    =         4000"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first screen of the table: the summary at 64 B, one line per
/// wait (spin and adaptive with a continuation line per further floor),
/// the Unix socket for scale; the full matrix after it.
#[test]
fn the_table_starts_with_the_summary() {
    let (a, b, shared) = two_cpus();
    let cpus = format!("{a},{b}");
    let mut args = vec!["bench", "--smoke", "--sizes", "64", "--cpus", &cpus];
    if shared {
        args.push("--allow-shared-cpus");
    }
    // BENCH_TRACE: each paired block's two figures on stderr, never in
    // the table.
    let out = Command::new(env!("CARGO_BIN_EXE_ringbus"))
        .args(&args)
        .env("BENCH_TRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let traced = |prefix: &str, what: &str| {
        stderr
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(what) && l.contains("| ratio "))
            .count()
    };
    assert_eq!(
        traced(
            "block ringbus-throughput-1to1-spin-overwrite-64B: floor ",
            "M msgs/s behind "
        ),
        5,
        "{stderr}"
    );
    assert_eq!(
        traced(
            "block ringbus-pingpong-spin-overwrite-64B: floor RTT p50 ",
            " ns | ringbus RTT p50 "
        ),
        5,
        "{stderr}"
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.contains("block ringbus-"), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("Summary at 64 B"), "{table}");
    // The summary ends at the first empty line; the matrix follows.
    let end = lines
        .iter()
        .position(|l| l.is_empty())
        .expect("a blank line");
    let summary = &lines[..end];
    let matrix = &lines[end..];
    assert!(matrix.iter().any(|l| l.starts_with("Ping-pong: one-way")));
    assert!(matrix.iter().any(|l| l.starts_with("Streaming throughput")));
    assert!(
        matrix.iter().any(|l| l.starts_with("Durable topic")),
        "{table}"
    );
    assert!(!summary.iter().any(|l| l.starts_with("Ping-pong")));
    let header = summary
        .iter()
        .position(|l| l.trim_start().starts_with("wait "))
        .expect("a column header");
    assert!(summary[header].contains("ow") && summary[header].contains("target"));
    // The wait lines, in order, each with a ping-pong and a streaming part;
    // continuation lines (more references) start blank.
    let body = &summary[header + 1..];
    let first_word = |l: &str| l.split_whitespace().next().unwrap_or("").to_string();
    let starts: Vec<(usize, String)> = body
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with("   "))
        .map(|(i, l)| (i, first_word(l)))
        .collect();
    let words: Vec<&str> = starts.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(
        words,
        ["spin", "adaptive", "block", "routing", "pattern:", "tag", "block,", "for"],
        "{table}"
    );
    let line = |k: usize| body[starts[k].0];
    for k in 0..3 {
        assert!(line(k).contains('│'), "{}", line(k));
        assert!(line(k).contains("copy ring"), "{}", line(k));
    }
    assert!(line(0).contains("seqlock copy") && line(0).contains("≤1.15 "));
    assert!(body[starts[0].0 + 1].contains("cache line"));
    assert!(line(1).contains("seqlock copy"));
    assert!(line(2).contains("futex") && line(2).contains("≤1.15 "));
    // Routing: each beside the exact topic, with the bound.
    assert!(line(4).contains("exact topic") && line(4).contains("≤1.05 "));
    assert!(line(5).contains("exact topic") && line(5).contains("≥1.00 "));
    assert!(line(6).contains("8 rings") && line(6).contains("≤1.15 "));
    assert!(line(7).contains("Unix socket"), "{}", line(7));
    for l in summary
        .iter()
        .filter(|l| l.contains('≤') || l.contains('≥'))
    {
        assert!(l.contains(" met") || l.contains(" MISSED"), "{l}");
    }

    // stderr is a pipe here, not a terminal: one plain progress line per
    // measured row, numbered 1..=N.
    let steps: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert!(!steps.is_empty(), "no progress on stderr: {stderr:?}");
    assert!(
        !stderr.contains('\r'),
        "no terminal codes in a log: {stderr:?}"
    );
    let total = steps.len();
    for (k, l) in steps.iter().enumerate() {
        let want = format!("[{}/{total}] run 1/1: ", k + 1);
        assert!(l.starts_with(&want), "{l:?} should start with {want:?}");
    }
    assert!(
        steps
            .iter()
            .any(|l| l.ends_with(": ringbus spin/overwrite ping-pong (64 B)")),
        "{steps:?}"
    );
    assert!(
        steps[0].ends_with(": floor: cache line ping-pong"),
        "{steps:?}"
    );
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    for args in [
        &["bench", "--sizes", "4"][..],
        &["bench", "--cpus", "0,0"],
        &["bench", "--cpus", "0,4096"],
        &["bench", "--wait", "sometimes"],
        &["bench", "--runs", "0"],
        &["bench", "--duration", "forever"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ringbus"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains("error"), "{args:?}: {err}");
    }
}

#[test]
fn the_child_subcommand_rejects_a_bad_spec() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringbus"))
        .args(["__bench-child", "{not json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("internal to `ringbus bench`"));
}

#[test]
fn fan_out_delivers_to_every_subscriber() {
    // The two subscribers share a CPU so the path runs on a 2-CPU machine.
    let (a, b, _) = two_cpus();
    let cpus = format!("{a},{b},{b}");
    let (json, _) = bench_json(&[
        "bench",
        "--smoke",
        "--json",
        "--cpus",
        &cpus,
        "--allow-shared-cpus",
        "--scenarios",
        "fan-out",
        "--sizes",
        "64",
        "--wait",
        "block",
        "--mode",
        "backpressure",
        "--direct",
    ]);
    let rows = json["rows"].as_array().unwrap();
    let thr = rows
        .iter()
        .find(|r| r["id"] == "ringbus-throughput-1to2-block-backpressure-64B")
        .expect("fan-out throughput row");
    // Back-pressure: each of the two subscribers gets every measured message.
    let sent = thr["params"]["iters"].as_u64().unwrap();
    assert_eq!(thr["received"].as_u64().unwrap(), 2 * sent, "{thr}");
    assert_eq!(thr["lost"], 0);
    let lat = rows
        .iter()
        .find(|r| r["id"] == "ringbus-latency-1to2-block-backpressure-64B")
        .expect("fan-out latency row");
    assert_eq!(lat["latency"]["count"], 2 * 2000, "{lat}");
    let notes = json["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("shared")));
    assert!(notes
        .iter()
        .any(|n| n.as_str().unwrap().contains("--direct")));
}
