//! `cargo run -p ringbus-zenoh --release --example bench`: ringbus A ->
//! bridge -> Zenoh -> bridge -> ringbus B next to Zenoh's own publisher ->
//! subscriber, each between two processes on this host (TCP on
//! 127.0.0.1, multicast scouting off).
//!
//! Latency: messages paced at `--rate` per second carry their send time
//! (CLOCK_MONOTONIC, shared by the two processes); the receiver reports
//! p50 / p99 of arrival minus send. Throughput: as fast as the path
//! takes them, without loss (back-pressure rings, Zenoh's
//! `CongestionControl::Block`), counted at the receiver from its first
//! message to its last.
//!
//! `--role` runs the receiving process (the bench starts it itself);
//! `--runs N` (3) alternates the two paths N times and reports the
//! per-run ratios and their median; `--sizes 64,1024` the throughput
//! sizes; `--latency-count 0` skips latency; `--path zenoh|bridge`
//! measures one path only (for a profile). `BENCH_TRACE=1` prints
//! every twentieth latency in arrival order.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringbus::broker::EmbeddedBroker;
use ringbus::client::{Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::{RecvError, Start};
use ringbus_zenoh::{Bridge, ImportTopic, Settings};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn zconfig(listen: Option<&str>, connect: Option<&str>) -> zenoh::Config {
    let mut c = zenoh::Config::default();
    c.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    if let Some(l) = listen {
        c.insert_json5("listen/endpoints", &format!("[\"{l}\"]"))
            .unwrap();
    }
    if let Some(e) = connect {
        c.insert_json5("connect/endpoints", &format!("[\"{e}\"]"))
            .unwrap();
    }
    c
}

fn bp(size: usize) -> TopicConfig {
    TopicConfig {
        max_message_size: size.max(64) as u32,
        capacity: 4096,
        mode: Mode::Backpressure,
        max_subscribers: 16,
    }
}

/// Receiver statistics, from the arrival times and send stamps.
struct Tally {
    lat: Vec<u64>,
    first: Option<Instant>,
    last: Instant,
}

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            lat: Vec::with_capacity(n),
            first: None,
            last: Instant::now(),
        }
    }
    fn add(&mut self, payload: &[u8]) {
        let now = now_ns();
        let mut w = [0u8; 8];
        w.copy_from_slice(&payload[..8]);
        self.lat.push(now.saturating_sub(u64::from_le_bytes(w)));
        let t = Instant::now();
        self.first.get_or_insert(t);
        self.last = t;
    }
    fn report(mut self) -> String {
        if std::env::var_os("BENCH_TRACE").is_some() {
            let n = self.lat.len();
            for i in (0..n).step_by((n / 20).max(1)) {
                eprintln!("trace #{i}: {} us", self.lat[i] / 1000);
            }
        }
        self.lat.sort_unstable();
        let q = |p: f64| {
            if self.lat.is_empty() {
                0
            } else {
                self.lat[((self.lat.len() - 1) as f64 * p) as usize]
            }
        };
        let secs = self
            .first
            .map_or(0.0, |f| self.last.duration_since(f).as_secs_f64());
        let rate = if secs > 0.0 {
            (self.lat.len() - 1) as f64 / secs
        } else {
            0.0
        };
        format!(
            "RESULT {} {} {} {:.0}",
            self.lat.len(),
            q(0.5),
            q(0.99),
            rate
        )
    }
}

/// The receiving process: plain Zenoh, or broker B with its bridge.
fn receiver(role: &str, ep: &str, count: usize) {
    let idle = Duration::from_secs(10);
    let mut out = std::io::stdout();
    let mut tally = Tally::new(count);
    match role {
        "zenoh" => {
            let s = zenoh::open(zconfig(None, Some(ep))).wait().unwrap();
            let sub = s.declare_subscriber("bench/**").wait().unwrap();
            let mut ready = false;
            while tally.lat.len() < count {
                let Ok(Some(sample)) = sub.recv_timeout(idle) else {
                    break;
                };
                let payload = sample.payload().to_bytes();
                if payload.len() < 8 || payload[..8] == [0; 8] {
                    if !ready {
                        writeln!(out, "READY").unwrap();
                        ready = true;
                    }
                    continue;
                }
                tally.add(&payload);
            }
        }
        "bridge" => {
            let b = EmbeddedBroker::start().unwrap();
            let settings = Settings {
                socket: Some(b.socket().to_owned()),
                import: vec!["bench.>".into()],
                import_topic: ImportTopic {
                    max_message_size: 64 << 10,
                    capacity: 4096,
                    mode: Mode::Backpressure,
                    max_subscribers: 16,
                },
                import_wait_ms: 60_000,
                ..Settings::default()
            };
            let _y = Bridge::start(settings, zconfig(None, Some(ep))).unwrap();
            let client = b.client().unwrap();
            let opts = SubscribeOptions {
                start: Start::Earliest,
                wait: ringbus::wait::WaitStrategy::Block,
            };
            let mut sub = client.subscriber("bench.>", opts).unwrap();
            let mut buf = vec![0u8; 64 << 10];
            let mut ready = false;
            while tally.lat.len() < count {
                match sub.recv_timeout(&mut buf, idle) {
                    Ok(d) => {
                        if d.info.len < 8 || buf[..8] == [0; 8] {
                            if !ready {
                                writeln!(out, "READY").unwrap();
                                ready = true;
                            }
                            continue;
                        }
                        tally.add(&buf[..d.info.len]);
                    }
                    Err(RecvError::Lagged { .. } | RecvError::EndOfStream) => {}
                    Err(_) => break,
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
    writeln!(out, "{}", tally.report()).unwrap();
}

/// Sends one message.
type Sender = Box<dyn FnMut(&[u8])>;

/// Sends `count` messages of `size` bytes (every `gap`, or flat out),
/// with the receiver running as a child process; returns its RESULT line.
fn run(path: &str, size: usize, count: usize, gap: Option<Duration>) -> (usize, u64, u64, f64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("tcp/127.0.0.1:{port}");
    let exe = std::env::current_exe().unwrap();
    // Sender side first (it listens), then the receiver.
    let a = EmbeddedBroker::start().unwrap();
    let zs = zenoh::open(zconfig(Some(&ep), None)).wait().unwrap();
    let mut bridge = None;
    // Probes go on the data topic itself (stamp 0), so that its rings
    // and routes exist on both sides before the measured messages.
    let mut send: Sender = match path {
        "zenoh" => {
            let p = zs
                .declare_publisher("bench/data")
                .congestion_control(CongestionControl::Block)
                .wait()
                .unwrap();
            Box::new(move |d: &[u8]| p.put(d).wait().unwrap())
        }
        _ => {
            let settings = Settings {
                socket: Some(a.socket().to_owned()),
                export: vec!["bench.>".into()],
                ..Settings::default()
            };
            // The bridge has its own session (listening); the plain one
            // above only holds the port until then.
            drop(zs.close().wait());
            bridge = Some(Bridge::start(settings, zconfig(Some(&ep), None)).unwrap());
            let client = a.client().unwrap();
            let mut p = client.publisher("bench.data", bp(size)).unwrap();
            Box::new(move |d: &[u8]| {
                p.publish(d, 0).unwrap();
            })
        }
    };
    let mut child = Command::new(exe)
        .args([
            "--role",
            path,
            "--endpoint",
            &ep,
            "--count",
            &count.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut data = vec![0x5au8; size.max(8)];
    data[..8].fill(0);
    loop {
        send(&data);
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(20)) {
            if l == "READY" {
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    for i in 0..count {
        if let Some(g) = gap {
            let due = start + g * i as u32;
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        data[..8].copy_from_slice(&now_ns().to_le_bytes());
        send(&data);
    }
    let line = loop {
        let l = rx.recv_timeout(Duration::from_secs(60)).expect("a result");
        if l.starts_with("RESULT") {
            break l;
        }
    };
    let _ = child.wait();
    drop(send);
    drop(bridge);
    let f: Vec<&str> = line.split_whitespace().collect();
    (
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
    )
}

/// The median of `v` (0 for none).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(role) = arg("--role") {
        let ep = arg("--endpoint").unwrap();
        let count = arg("--count").unwrap().parse().unwrap();
        receiver(&role, &ep, count);
        return;
    }
    let lat_count: usize = arg("--latency-count").map_or(5000, |v| v.parse().unwrap());
    let rate: u32 = arg("--rate").map_or(5000, |v| v.parse().unwrap());
    let tput_count: usize = arg("--count").map_or(200_000, |v| v.parse().unwrap());
    let runs: usize = arg("--runs").map_or(3, |v| v.parse().unwrap());
    let sizes: Vec<usize> = arg("--sizes").map_or(vec![64, 1024], |v| {
        v.split(',').map(|s| s.parse().unwrap()).collect()
    });
    let latency = lat_count > 0;
    let gap = Duration::from_secs(1) / rate;
    println!(
        "latency: {lat_count} messages of 64 B at {rate}/s; throughput: {tput_count} messages, flat out; \
         {runs} runs, each Zenoh's own path then the bridge's (ratios: bridge / Zenoh, per run)"
    );
    println!(
        "{:<4} {:<30} {:>6} {:>9} {:>9} {:>9} {:>12}",
        "run", "path", "bytes", "received", "p50 us", "p99 us", "msgs/s"
    );
    let only = arg("--path");
    let paths: Vec<_> = [
        ("zenoh", "zenoh pub -> sub"),
        ("bridge", "ringbus -> bridge x2 -> ringbus"),
    ]
    .into_iter()
    .filter(|(p, _)| only.as_deref().map_or(true, |o| o == *p))
    .collect();
    // Per run: [p50 zenoh, p50 bridge], and per size [rate zenoh, rate bridge].
    let mut p50_ratio = Vec::new();
    let mut rate_ratio: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for r in 1..=runs {
        let mut p50 = [0.0f64; 2];
        let mut rates = vec![[0.0f64; 2]; sizes.len()];
        for (path, name) in &paths {
            let k = usize::from(*path == "bridge");
            if latency {
                let (n, p, p99, _) = run(path, 64, lat_count, Some(gap));
                p50[k] = p as f64;
                println!(
                    "{r:<4} {name:<30} {:>6} {n:>9} {:>9.1} {:>9.1} {:>12}",
                    64,
                    p as f64 / 1e3,
                    p99 as f64 / 1e3,
                    "(paced)"
                );
            }
            for (j, &size) in sizes.iter().enumerate() {
                let (n, _, _, rate) = run(path, size, tput_count, None);
                rates[j][k] = rate;
                println!(
                    "{r:<4} {name:<30} {size:>6} {n:>9} {:>9} {:>9} {rate:>12.0}",
                    "-", "-"
                );
            }
        }
        if latency && p50[0] > 0.0 {
            p50_ratio.push(p50[1] / p50[0]);
        }
        for (j, [z, b]) in rates.iter().enumerate() {
            if *z > 0.0 {
                rate_ratio[j].push(b / z);
            }
        }
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("\nbridge / Zenoh's own, per run; median (target, informational)");
    if latency {
        let m = median(p50_ratio.clone());
        let met = if m <= 1.2 { "met" } else { "MISSED" };
        println!(
            "  p50 latency 64 B      {:<24} median {m:.2}  (at most 1.20)  {met}",
            list(&p50_ratio)
        );
    }
    for (j, size) in sizes.iter().enumerate() {
        let m = median(rate_ratio[j].clone());
        let met = if m >= 0.8 { "met" } else { "MISSED" };
        println!(
            "  throughput {:<10} {:<24} median {m:.2}  (at least 0.80)  {met}",
            format!("{size} B"),
            list(&rate_ratio[j])
        );
    }
}
