//! C and C++ programs against the built library and a real broker: the C
//! examples and test programs compile with `cc -std=c11 -Wall -Wextra
//! -Werror`, the C++ ones (over `include/ringbus.hpp`) with `c++ -std=c++17
//! -Wall -Wextra -Werror`, and messages cross C -> C, C -> Rust, Rust -> C,
//! C++ -> C, C -> C++, C++ -> Rust and Rust -> C++ intact; the APIs' error
//! contracts (`tests/c/api_test.c`, `tests/cpp/api_test.cpp`), patterns
//! and filters (`tests/c/pattern_filter_test.c`), valgrind
//! memcheck runs, the header checks, the ping-pong, and the pkg-config
//! install.
//!
//! `cargo test` does not build this package's cdylib/staticlib for its
//! integration tests, so the first test to need them runs
//! `cargo build -p ringbus-ffi -p ringbus-cli` into `<target>/ffi-tests` (its own
//! target directory: no lock shared with the `cargo test` running us). That
//! build also provides the `ringbus` broker binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ringbus::client::{Client, GroupOptions, Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::{RecvError, Start};

const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror"];
const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror"];
/// Native libraries the static library needs (`--print native-static-libs`).
const STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"];
/// The test payload's size bound, as in `examples/c/publisher.c`.
const MAX: usize = 1024;
const PATIENCE: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the built library, broker and C programs are.
struct Built {
    /// Holds libringbus.so / .a and the `ringbus` binary.
    lib_dir: PathBuf,
    /// Compiled C programs.
    bin_dir: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        // <target>/<profile>/deps/c_clients-HASH
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().to_path_buf();
        let own = target.join("ffi-tests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "ringbus-ffi", "-p", "ringbus-cli"])
            .current_dir(workspace())
            .env("CARGO_TARGET_DIR", &own)
            .status()
            .expect("run cargo build for the C library");
        assert!(status.success(), "cargo build -p ringbus-ffi failed");
        let lib_dir = own.join("debug");
        let bin_dir = own.join("c");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let b = Built { lib_dir, bin_dir };
        for (name, src) in [
            ("publisher", "examples/c/publisher.c"),
            ("subscriber", "examples/c/subscriber.c"),
            ("pingpong", "examples/c/pingpong.c"),
            ("api_test", "ffi/tests/c/api_test.c"),
            ("pattern_filter_test", "ffi/tests/c/pattern_filter_test.c"),
            ("journal_test", "ffi/tests/c/journal_test.c"),
            ("group_test", "ffi/tests/c/group_test.c"),
        ] {
            compile(&b, name, src, false);
        }
        compile(&b, "api_test_static", "ffi/tests/c/api_test.c", true);
        for (name, src) in [
            ("cpp_publisher", "examples/cpp/publisher.cpp"),
            ("cpp_subscriber", "examples/cpp/subscriber.cpp"),
            ("cpp_api_test", "ffi/tests/cpp/api_test.cpp"),
        ] {
            compile(&b, name, src, false);
        }
        b
    })
}

/// Compiles a C program (C++ for a `.cpp` source, with `ringbus.hpp`)
/// against include/ringbus.h and the shared (or static) library. The
/// executable is renamed into place, so a concurrent test run never sees a
/// half-written one.
fn compile(b: &Built, name: &str, src: &str, static_lib: bool) {
    let ws = workspace();
    let tmp = b.bin_dir.join(format!("{name}.tmp-{}", std::process::id()));
    let (compiler, flags) = match src.ends_with(".cpp") {
        true => ("c++", CXX_FLAGS),
        false => ("cc", C_FLAGS),
    };
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .arg("-I")
        .arg(ws.join("include"))
        .arg(ws.join(src))
        .arg("-o")
        .arg(&tmp);
    if static_lib {
        cmd.arg(b.lib_dir.join("libringbus.a")).args(STATIC_LIBS);
    } else {
        cmd.arg("-L")
            .arg(&b.lib_dir)
            .arg("-lringbus")
            .arg(format!("-Wl,-rpath,{}", b.lib_dir.display()));
    }
    let out = cmd.output().expect("run the C/C++ compiler");
    assert!(
        out.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, b.bin_dir.join(name)).unwrap();
}

/// A fresh directory, unique per test, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringbus-ffi-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `ringbus serve` on a private socket and data directory, killed on drop.
struct Broker {
    child: Child,
    socket: PathBuf,
    _dir: TestDir,
}

impl Broker {
    fn start(name: &str) -> Broker {
        Broker::start_with_config(name, "")
    }

    /// A broker with `topics` (TOML) in its config, its journals in its
    /// test directory.
    fn start_with_config(name: &str, topics: &str) -> Broker {
        let dir = TestDir::new(name);
        let socket = dir.0.join("ringbus.sock");
        let config = dir.0.join("ringbus.toml");
        let journal = dir.0.join("journal");
        std::fs::write(
            &config,
            format!(
                "[server]\njournal_dir = \"{}\"\n\n{topics}",
                journal.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(built().lib_dir.join("ringbus"))
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(dir.0.join("data"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn ringbus serve");
        let end = Instant::now() + PATIENCE;
        while Client::connect(&socket).is_err() {
            if let Ok(Some(s)) = child.try_wait() {
                panic!("broker exited early: {s}");
            }
            assert!(Instant::now() < end, "broker did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        Broker {
            child,
            socket,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    /// A command for C program `name`, talking to this broker.
    fn c(&self, name: &str) -> Command {
        let mut cmd = c_command(built().bin_dir.join(name));
        cmd.env("RINGBUS_SOCKET", &self.socket);
        cmd
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command running a C program (or valgrind on one). `cargo test` points
/// `LD_LIBRARY_PATH` at its own output directories, whose libringbus.so
/// (if any) may be stale and would win over the programs' rpath.
fn c_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// Runs a command to completion with a time limit; panics with its output
/// unless it succeeds.
fn run_ok(mut cmd: Command, what: &str) -> String {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let out = wait_output(child, what);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn wait_output(mut child: Child, what: &str) -> Output {
    let end = Instant::now() + PATIENCE;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish in {PATIENCE:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a subscriber program and waits for its "ready" line.
fn spawn_subscriber(mut cmd: Command) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn subscriber");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "subscriber did not get ready");
    (child, out)
}

/// Waits for a subscriber program and returns the rest of its output.
fn finish_subscriber(child: Child, mut out: BufReader<std::process::ChildStdout>) -> String {
    let mut rest = String::new();
    let reader = std::thread::spawn(move || {
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        rest
    });
    let o = wait_output(child, "C subscriber");
    let rest = reader.join().unwrap();
    assert!(
        o.status.success(),
        "C subscriber failed ({}): {rest}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    rest
}

// The test payload of examples/c/common.h.
fn payload_len(i: u64, max: usize) -> usize {
    (i.wrapping_mul(7919) % (max as u64 + 1)) as usize
}

fn payload(i: u64, max: usize) -> Vec<u8> {
    (0..payload_len(i, max))
        .map(|j| (i.wrapping_mul(31) + j as u64 * 7 + (i >> 8)) as u8)
        .collect()
}

/// Program `publisher` sends test messages to program `subscriber` (the C
/// or C++ examples), which checks each.
fn program_to_program(name: &str, publisher: &str, subscriber: &str, zero_copy: bool) {
    let broker = Broker::start(name);
    let count = "20000";
    let mut sub = broker.c(subscriber);
    if zero_copy {
        sub.arg("-z");
    }
    sub.args([name, count]);
    let (child, out) = spawn_subscriber(sub);
    let mut p = broker.c(publisher);
    p.args([name, count]);
    let p = run_ok(p, publisher);
    assert!(p.contains("published 20000 messages"), "{p}");
    let s = finish_subscriber(child, out);
    assert!(s.contains("received 20000 messages"), "{s}");
    assert!(s.contains("all intact"), "{s}");
}

#[test]
fn c_publisher_to_c_subscriber() {
    program_to_program("c2c", "publisher", "subscriber", false);
}

#[test]
fn c_publisher_to_c_zero_copy_subscriber() {
    program_to_program("c2cz", "publisher", "subscriber", true);
}

#[test]
fn cpp_publisher_to_c_subscriber() {
    program_to_program("cpp2c", "cpp_publisher", "subscriber", false);
}

#[test]
fn c_publisher_to_cpp_zero_copy_subscriber() {
    program_to_program("c2cppz", "publisher", "cpp_subscriber", true);
}

#[test]
fn cpp_publisher_to_cpp_subscriber() {
    program_to_program("cpp2cpp", "cpp_publisher", "cpp_subscriber", false);
}

/// Program `publisher` (C or C++ example) sends test messages to a Rust
/// subscriber, which checks each.
fn program_to_rust(name: &str, publisher: &str) {
    let broker = Broker::start(name);
    let client = broker.client();
    let mut sub = client
        .subscriber(
            name,
            SubscribeOptions {
                start: Start::Earliest,
                ..Default::default()
            },
        )
        .unwrap();
    let count = 20_000u64;
    let mut p = broker.c(publisher);
    p.args([name, &count.to_string()]);
    let child = p
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; MAX];
    for i in 0..count {
        let d = sub
            .recv_timeout(&mut buf, PATIENCE)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!((d.info.seq, d.info.tag), (i, i));
        assert_eq!(&buf[..d.info.len], payload(i, MAX), "message {i}");
    }
    let o = wait_output(child, publisher);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The publisher left: its ring ends, nothing more arrives.
    assert_eq!(
        sub.recv_timeout(&mut buf, PATIENCE),
        Err(RecvError::EndOfStream)
    );
}

#[test]
fn c_publisher_to_rust_subscriber() {
    program_to_rust("c2rust", "publisher");
}

#[test]
fn cpp_publisher_to_rust_subscriber() {
    program_to_rust("cpp2rust", "cpp_publisher");
}

/// A Rust publisher sends test messages to program `subscriber` (C or
/// C++ example), which checks each.
fn rust_to_program(name: &str, subscriber: &str) {
    let broker = Broker::start(name);
    let count = 20_000u64;
    let mut sub = broker.c(subscriber);
    sub.args([name, &count.to_string()]);
    let (child, out) = spawn_subscriber(sub);
    let client = broker.client();
    let config = TopicConfig {
        max_message_size: MAX as u32,
        capacity: 256,
        mode: Mode::Backpressure,
        ..TopicConfig::default()
    };
    let mut publisher = client.publisher(name, config).unwrap();
    for i in 0..count {
        assert_eq!(publisher.publish(&payload(i, MAX), i).unwrap(), i);
    }
    let s = finish_subscriber(child, out);
    assert!(s.contains("received 20000 messages"), "{s}");
    assert!(s.contains("all intact"), "{s}");
}

#[test]
fn rust_publisher_to_c_subscriber() {
    rust_to_program("rust2c", "subscriber");
}

#[test]
fn rust_publisher_to_cpp_subscriber() {
    rust_to_program("rust2cpp", "cpp_subscriber");
}

#[test]
fn c_api_contract() {
    let broker = Broker::start("api");
    let out = run_ok(broker.c("api_test"), "api_test");
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn cpp_api_contract() {
    let broker = Broker::start("cppapi");
    let out = run_ok(broker.c("cpp_api_test"), "cpp_api_test");
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_api_contract_static_library() {
    let broker = Broker::start("api-static");
    let out = run_ok(broker.c("api_test_static"), "api_test (static)");
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_replay_from_the_journal() {
    let broker = Broker::start_with_config(
        "journal",
        "[[topic]]\nname = \"cj.feed\"\nmode = \"backpressure\"\ncapacity = 16\nmax_message_size = 8\ndurable = true\nfsync = \"interval:1ms\"\n\n[[topic]]\nname = \"cj.plain\"\n",
    );
    let out = run_ok(broker.c("journal_test"), "journal_test");
    assert!(out.contains("all checks passed"), "{out}");
}

/// Consumer groups from C: bad options, a member's unsupported calls,
/// explicit acknowledgements, a message handed back.
#[test]
fn c_group_contract() {
    let broker = Broker::start("group");
    let mut cmd = broker.c("group_test");
    cmd.arg("contract");
    let out = run_ok(cmd, "group_test contract");
    assert!(out.contains("all checks passed"), "{out}");
}

/// Two C member processes and a Rust member share one group: each
/// message goes to exactly one of them, and each takes part.
#[test]
fn c_and_rust_members_share_a_group() {
    const N: u64 = 200_000;
    let broker = Broker::start("groupmix");
    let client = broker.client();
    let config = TopicConfig {
        max_message_size: 8,
        capacity: 1024,
        mode: Mode::Backpressure,
        ..TopicConfig::default()
    };
    let mut publisher = client.publisher("cg.jobs", config).unwrap();
    // Each C member's output is read as it comes (a member blocked on a
    // full pipe would hold its claim, and the publisher with it).
    let c_members: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = broker.c("group_test");
            cmd.args(["member", "cg.jobs", "workers"]);
            let (child, out) = spawn_subscriber(cmd);
            std::thread::spawn(move || finish_subscriber(child, out))
        })
        .collect();
    let options = GroupOptions {
        batch: 16,
        ..GroupOptions::default()
    };
    let mut rust = client
        .subscriber_in_group("cg.jobs", "workers", options)
        .unwrap();
    let rust = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8];
        loop {
            match rust.recv_timeout(&mut buf, PATIENCE) {
                Ok(d) => {
                    let seq = d.delivery.info.seq;
                    assert_eq!(buf, seq.to_le_bytes(), "payload of {seq}");
                    assert_eq!(d.deliveries, 1, "{seq}: nobody left, nothing redelivered");
                    seen.push(seq);
                }
                Err(RecvError::EndOfStream) => return seen,
                Err(e) => panic!("Rust member: {e}"),
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    for i in 0..N {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = publisher.publish_timeout(&i.to_le_bytes(), i, left);
        r.unwrap_or_else(|e| panic!("publishing {i}: {e}"));
    }
    drop(publisher);
    let mut all = rust.join().unwrap();
    let mut per = vec![all.len()];
    for m in c_members {
        let out = m.join().unwrap();
        assert_eq!(
            out.lines().last(),
            Some("done"),
            "a C member did not finish"
        );
        let mut n = 0;
        for line in out.lines().filter(|l| *l != "done") {
            let (seq, deliveries) = line.split_once(' ').expect(line);
            assert_eq!(deliveries, "1", "{line}: nothing redelivered");
            all.push(seq.parse().expect(line));
            n += 1;
        }
        per.push(n);
    }
    all.sort_unstable();
    assert_eq!(all.len() as u64, N, "messages per member {per:?}");
    assert!(all.iter().copied().eq(0..N), "each message exactly once");
    assert!(
        per.iter().all(|&n| n > 0),
        "each member takes part: {per:?}"
    );
}

#[test]
fn c_patterns_and_filters() {
    let broker = Broker::start("patfilter");
    let out = run_ok(broker.c("pattern_filter_test"), "pattern_filter_test");
    assert!(out.contains("all checks passed"), "{out}");
}

/// The C predicate's calls through the Rust closure, under memcheck.
#[test]
fn c_patterns_and_filters_under_valgrind() {
    assert!(
        Command::new("valgrind").arg("--version").output().is_ok(),
        "this test needs valgrind: apt-get install valgrind"
    );
    let broker = Broker::start("vgpatfilter");
    let mut cmd = c_command("valgrind");
    cmd.args([
        "--tool=memcheck",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
    ])
    .arg(built().bin_dir.join("pattern_filter_test"))
    .env("RINGBUS_SOCKET", &broker.socket);
    let out = run_ok(cmd, "pattern_filter_test under valgrind");
    assert!(out.contains("all checks passed"), "{out}");
}

/// Program `publisher` to program `subscriber` (zero-copy), both under
/// valgrind memcheck: zero errors, zero leaks.
fn under_valgrind(name: &str, publisher: &str, subscriber: &str) {
    assert!(
        Command::new("valgrind").arg("--version").output().is_ok(),
        "this test needs valgrind: apt-get install valgrind"
    );
    let broker = Broker::start(name);
    let valgrind = |prog: &str, args: &[&str]| {
        let mut cmd = c_command("valgrind");
        cmd.args([
            "--tool=memcheck",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
        ])
        .arg(built().bin_dir.join(prog))
        .args(args)
        .env("RINGBUS_SOCKET", &broker.socket);
        cmd
    };
    let (child, out) = spawn_subscriber(valgrind(subscriber, &["-z", name, "300"]));
    let child_pub = valgrind(publisher, &[name, "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let p = wait_output(child_pub, "publisher under valgrind");
    let p_err = String::from_utf8_lossy(&p.stderr);
    assert!(p.status.success(), "publisher under valgrind: {p_err}");
    assert!(p_err.contains("ERROR SUMMARY: 0 errors"), "{p_err}");
    let s = finish_subscriber(child, out);
    assert!(s.contains("received 300 messages"), "{s}");
}

#[test]
fn c_to_c_under_valgrind() {
    under_valgrind("vg", "publisher", "subscriber");
}

#[test]
fn cpp_to_cpp_under_valgrind() {
    under_valgrind("vgcpp", "cpp_publisher", "cpp_subscriber");
}

#[test]
fn cpp_api_contract_under_valgrind() {
    assert!(
        Command::new("valgrind").arg("--version").output().is_ok(),
        "this test needs valgrind: apt-get install valgrind"
    );
    let broker = Broker::start("vgcppapi");
    let mut cmd = c_command("valgrind");
    cmd.args([
        "--tool=memcheck",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
    ])
    .arg(built().bin_dir.join("cpp_api_test"))
    .env("RINGBUS_SOCKET", &broker.socket);
    let out = run_ok(cmd, "cpp_api_test under valgrind");
    assert!(out.contains("all checks passed"), "{out}");
}

/// The C++ wrapper with C++20, where its payload views are std::span.
#[test]
fn cpp_header_compiles_as_cxx20() {
    let ws = workspace();
    let out = Command::new("c++")
        .args(["-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(ws.join("include"))
        .arg(ws.join("ffi/tests/cpp/api_test.cpp"))
        .output()
        .expect("run c++");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_cxx17_and_pedantic_c11() {
    let header = workspace().join("include/ringbus.h");
    let out = Command::new("c++")
        .args([
            "-std=c++17",
            "-fsyntax-only",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-x",
            "c++",
        ])
        .arg(&header)
        .output()
        .expect("run c++");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("cc")
        .args(C_FLAGS)
        .args(["-pedantic", "-fsyntax-only", "-x", "c"])
        .arg(&header)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pingpong_reports_percentiles() {
    let broker = Broker::start("pingpong");
    let mut cmd = broker.c("pingpong");
    cmd.args(["500", "32"]);
    let out = run_ok(cmd, "pingpong");
    assert!(
        out.contains("500 round trips") && out.contains("p99"),
        "{out}"
    );
}

#[test]
fn installs_with_pkg_config() {
    assert!(
        Command::new("pkg-config").arg("--version").output().is_ok(),
        "this test needs pkg-config: apt-get install pkg-config"
    );
    let b = built();
    let prefix = TestDir::new("prefix");
    let out = Command::new(workspace().join("ffi/install.sh"))
        .arg(&prefix.0)
        .arg("--from")
        .arg(&b.lib_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(prefix.0.join("include/ringbus.hpp").is_file());
    let pc = prefix.0.join("lib/pkgconfig");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "ringbus"])
        .env("PKG_CONFIG_PATH", &pc)
        .output()
        .unwrap();
    assert!(flags.status.success());
    let flags = String::from_utf8(flags.stdout).unwrap();
    assert!(flags.contains("-lringbus"), "{flags}");
    let exe = prefix.0.join("publisher");
    let out = Command::new("cc")
        .args(C_FLAGS)
        .arg(workspace().join("examples/c/publisher.c"))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let broker = Broker::start("pc");
    let out = c_command(&exe)
        .args(["pc", "10"])
        .env("RINGBUS_SOCKET", &broker.socket)
        .env("LD_LIBRARY_PATH", prefix.0.join("lib"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
