//! Chaos: rounds of kill -9 at random moments, with restarts.
//!
//! Each round starts a broker (`ringbus serve`, with its keeper), a few
//! publishers and subscribers (this test binary run again in a child role,
//! each its own process), on a back-pressure or an overwrite topic, and
//! kills one or two of them with SIGKILL: a publisher, a subscriber or the
//! broker, at a moment drawn to include the first milliseconds after the
//! victim started (connecting, attaching, subscribing, a port being handed
//! over) as well as the middle of the stream. A broker that was killed is
//! restarted on the same socket and data directory (sometimes killed again
//! while it takes back what its keeper held, and restarted again).
//!
//! The survivors check what they received, message by message:
//! * no torn message (every payload is `generated(seq, len)`, the tag is
//!   the sequence number);
//! * no duplicate, and every gap reported exactly: a message's sequence
//!   number is the ring's next one plus what `Lagged { missed }` reported
//!   since the last one, so received + reported accounts for the whole
//!   range read (from where the subscriber joined the ring: where
//!   `subscribe` placed it for rings that existed then, else sequence 0);
//! * on a back-pressure topic, no loss at all (no `Lagged`);
//! * a subscriber that had subscribed before a publisher started reads
//!   that publisher's ring to its end; for a publisher that finished, the
//!   subscriber's last position (plus any loss reported last) is the
//!   publisher's count.
//!
//! Publishers publish with a timeout of [`PATIENCE`]: a publisher held
//! back for that long by a subscriber that is dead (its port never
//! reclaimed) fails the round. Timing never decides a result otherwise:
//! every other wait is a hang detector of the same patience.
//!
//! `RINGBUS_CHAOS_ROUNDS` (default 100) sets the number of rounds,
//! `RINGBUS_CHAOS_SEED` the first round's seed (default: from the clock;
//! each round's seed is printed, and a failing round's seed replays it as
//! the first round). After the rounds, no process of the test may be left
//! (keepers exit by themselves once their owners are gone).
//!
//! `harness = false`: `main` plays a child's role when [`ROLE`] says so.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Trial};
use ringbus::client::{Client, Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::{RecvError, Start};
use ringbus::wait::WaitStrategy;

/// The environment variable that makes this binary a child: `publisher`
/// or `subscriber`; its parameters come as `key=value` arguments.
const ROLE: &str = "RINGBUS_CHAOS_ROLE";
const TOPIC: &str = "chaos";

// ---------------------------------------------------------------------------
// A seeded generator: splitmix64, enough for drawing a round's plan.

#[derive(Clone, Copy, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[self.next() as usize % of.len()]
    }
    fn micros(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(self.range(lo, hi))
    }
    /// When to kill a process, counted from its start: a third within its
    /// first 3 ms (connecting, attaching or subscribing, ports being handed
    /// over), a third within 30 ms, a third anywhere in a stream.
    fn kill_delay(&mut self) -> Duration {
        match self.next() % 3 {
            0 => self.micros(0, 3_000),
            1 => self.micros(0, 30_000),
            _ => self.micros(0, 400_000),
        }
    }
}

/// The seed of the round after the one of seed `s` (not the first number
/// that round draws).
fn next_seed(s: u64) -> u64 {
    Rng(!s).next()
}

// ---------------------------------------------------------------------------
// Children.

/// A child's `key=value` arguments.
struct Params(BTreeMap<String, String>);

impl Params {
    fn from_args() -> Params {
        Params(
            std::env::args()
                .skip(1)
                .filter_map(|a| a.split_once('=').map(|(k, v)| (k.into(), v.into())))
                .collect(),
        )
    }
    fn str(&self, k: &str) -> &str {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("child parameter {k} missing"))
    }
    fn u64(&self, k: &str) -> u64 {
        self.str(k).parse().expect("a number")
    }
    fn config(&self) -> TopicConfig {
        TopicConfig {
            max_message_size: self.u64("max") as u32,
            capacity: self.u64("capacity") as u32,
            mode: self.str("mode").parse().expect("a mode"),
            max_subscribers: 16,
        }
    }
}

/// Prints one line for the parent, at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The parent reads until we exit; a failed write means it is gone.
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

/// Reports a broken guarantee and exits.
fn fail(why: &str) -> ! {
    say(&format!("FAIL {why}"));
    std::process::exit(3)
}

/// A victim that kills itself (SIGKILL) this long after it started: a
/// finer aim at the first microseconds of an attach than the parent's
/// kill after spawning it.
fn arm_self_kill(p: &Params) {
    let Some(us) = p.0.get("die_after_us") else {
        return;
    };
    let d = Duration::from_micros(us.parse().expect("a number"));
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
    });
}

/// The size of message `i` (at least 8: it starts with its sequence).
fn size_of(i: u64, max: u64) -> usize {
    (8 + i.wrapping_mul(0x9E37_79B9) % (max - 7)) as usize
}

/// Connects and runs `f` until it succeeds: the broker may be dead or
/// restarting, as an application would see it.
fn with_broker<T>(socket: &Path, what: &str, mut f: impl FnMut(&Client) -> Result<T, String>) -> T {
    let end = Instant::now() + PATIENCE;
    loop {
        let r = Client::connect(socket)
            .map_err(|e| e.to_string())
            .and_then(|c| f(&c));
        match r {
            Ok(v) => return v,
            Err(e) if Instant::now() > end => fail(&format!("cannot {what}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// `publisher`: attaches, says `ring ID`, publishes `count` generated
/// messages, `batch` at a time with a millisecond between batches, says
/// `done COUNT` and leaves (closing its ring).
fn child_publisher(p: &Params) {
    arm_self_kill(p);
    let socket = PathBuf::from(p.str("socket"));
    let config = p.config();
    let (count, batch, max) = (p.u64("count"), p.u64("batch"), p.u64("max"));
    let mut publisher = with_broker(&socket, "attach a publisher", |c| {
        c.publisher(TOPIC, config).map_err(|e| e.to_string())
    });
    say(&format!("ring {}", publisher.ring_id()));
    for i in 0..count {
        match publisher.publish_timeout(&generated(i, size_of(i, max)), i, PATIENCE) {
            Ok(seq) if seq == i => {}
            Ok(seq) => fail(&format!("message {i} was published as {seq}")),
            Err(e) => fail(&format!(
                "publishing message {i}: {e} (held back for {PATIENCE:?}: by a dead subscriber's port?)"
            )),
        }
        if (i + 1) % batch == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    say(&format!("done {count}"));
}

/// What a subscriber has read of one ring.
struct Track {
    /// Where it joined the ring (the first sequence it was to read).
    join: u64,
    /// The next sequence expected (before any loss reported since).
    next: u64,
    /// Losses reported since the last message.
    pending: u64,
    received: u64,
    missed: u64,
    ended: bool,
}

impl Track {
    fn new(join: u64) -> Track {
        Track {
            join,
            next: join,
            pending: 0,
            received: 0,
            missed: 0,
            ended: false,
        }
    }

    /// Checks message `seq` (tag `tag`, `payload`) against what came before.
    fn message(&mut self, seq: u64, tag: u64, payload: &[u8]) -> Result<(), String> {
        if self.ended {
            return Err(format!("message {seq} after the end of the ring"));
        }
        if payload.len() < 8 {
            return Err(format!("torn message {seq}: {} bytes", payload.len()));
        }
        let i = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        if payload != generated(i, payload.len()).as_slice() {
            return Err(format!("torn message {seq} (payload says {i})"));
        }
        if i != seq || tag != seq {
            return Err(format!("message {seq} carries payload {i}, tag {tag}"));
        }
        if seq < self.next {
            return Err(format!("duplicate: message {seq}, expected {}", self.next));
        }
        let want = self.next + self.pending;
        if seq != want {
            return Err(format!(
                "message {seq} after {} (joined at {}): {} lost, {} reported",
                self.next.wrapping_sub(1),
                self.join,
                seq - self.next,
                self.pending
            ));
        }
        self.next = seq + 1;
        self.pending = 0;
        self.received += 1;
        Ok(())
    }
}

/// What the parent says once every publisher has exited: the broker's pid
/// and the rings to read to their end.
type End = (u32, Vec<u64>);

/// `subscriber`: subscribes (from the earliest message held), says
/// `subscribed`, checks every message and loss; `slow` > 0 sleeps a
/// millisecond every that many messages. Once the parent writes
/// `end BROKER_PID RING...` on stdin (every publisher has exited), it
/// goes on until it has re-joined that broker, every ring listed has
/// ended and no ring is left; then says `saw RING JOIN NEXT RECEIVED
/// MISSED PENDING ENDED` for each ring it read, and `ok`.
fn child_subscriber(p: &Params) {
    arm_self_kill(p);
    let socket = PathBuf::from(p.str("socket"));
    let backpressure = p.config().mode == Mode::Backpressure;
    let slow = p.u64("slow");
    let wait = match p.str("wait") {
        "block" => WaitStrategy::Block,
        _ => WaitStrategy::Adaptive {
            spin: Duration::from_micros(20),
        },
    };
    let end: Arc<Mutex<Option<End>>> = Arc::default();
    let e = end.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            let mut w = line.split_whitespace();
            if w.next() == Some("end") {
                let pid = w.next().and_then(|p| p.parse().ok()).expect("a pid");
                let rings = w.map(|r| r.parse().expect("a ring id")).collect();
                *e.lock().unwrap() = Some((pid, rings));
            }
        }
    });
    let options = SubscribeOptions {
        start: Start::Earliest,
        wait,
    };
    let (client, mut sub) = with_broker(&socket, "subscribe", |c| {
        let s = c.subscriber(TOPIC, options).map_err(|e| e.to_string())?;
        Ok((c.clone(), s))
    });
    // Rings attached now start where the subscription placed them; any
    // other starts at 0.
    let mut rings: BTreeMap<u64, Track> = sub
        .rings()
        .iter()
        .map(|r| (r.ring_id, Track::new(r.next_seq)))
        .collect();
    say("subscribed");
    let mut buf = vec![0u8; p.u64("max") as usize];
    let mut ending: Option<Instant> = None;
    loop {
        let r = sub.recv_timeout(&mut buf, Duration::from_millis(20));
        let quiet = match r {
            Ok(d) => {
                let t = rings.entry(d.ring_id).or_insert_with(|| Track::new(0));
                if let Err(why) = t.message(d.info.seq, d.info.tag, &buf[..d.info.len]) {
                    fail(&format!("ring {}: {why}", d.ring_id));
                }
                if slow > 0 && t.received % slow == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                false
            }
            Err(RecvError::Lagged { missed }) => {
                let ring = sub.last_ring_id();
                if backpressure {
                    fail(&format!(
                        "ring {ring}: {missed} messages lost on a back-pressure topic"
                    ));
                }
                let t = rings.entry(ring).or_insert_with(|| Track::new(0));
                t.pending += missed;
                t.missed += missed;
                false
            }
            Err(RecvError::EndOfStream) => {
                let ring = sub.last_ring_id();
                let t = rings.entry(ring).or_insert_with(|| Track::new(0));
                if t.ended {
                    fail(&format!("ring {ring} ended twice"));
                }
                t.ended = true;
                false
            }
            Err(RecvError::Timeout) => true,
            Err(e) => fail(&format!("receive: {e}")),
        };
        let Some((pid, must)) = end.lock().unwrap().clone() else {
            continue;
        };
        let since = *ending.get_or_insert_with(Instant::now);
        if quiet
            && client.broker_pid() == pid
            && must.iter().all(|r| rings.get(r).is_some_and(|t| t.ended))
            && sub.rings().is_empty()
        {
            break;
        }
        if since.elapsed() > PATIENCE {
            say_saw(&rings);
            let missing: Vec<_> = must
                .iter()
                .filter(|r| !rings.get(r).is_some_and(|t| t.ended))
                .collect();
            fail(&format!(
                "not done {PATIENCE:?} after the end: broker {} (want {pid}), rings not ended {missing:?}, held {:?}",
                client.broker_pid(),
                sub.rings()
            ));
        }
    }
    say_saw(&rings);
    say("ok");
}

/// `saw RING JOIN NEXT RECEIVED MISSED PENDING ENDED` for each ring.
fn say_saw(rings: &BTreeMap<u64, Track>) {
    for (id, t) in rings {
        say(&format!(
            "saw {id} {} {} {} {} {} {}",
            t.join,
            t.next,
            t.received,
            t.missed,
            t.pending,
            u8::from(t.ended)
        ));
    }
}

// ---------------------------------------------------------------------------
// A round's plan.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Pub(usize),
    Sub(usize),
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    /// The child kills itself this long after it started.
    Itself(Duration),
    /// The parent kills it this long after spawning it.
    Parent(Duration),
}

#[derive(Clone, Copy, Debug)]
struct BrokerKill {
    /// Killed this long after `anchor` was spawned.
    anchor: Who,
    after: Duration,
    /// Restarted after this long.
    down: Duration,
    /// Killed again this long after the restart, and down this long.
    again: Option<(Duration, Duration)>,
}

#[derive(Debug)]
struct PubPlan {
    at: Duration,
    count: u64,
    batch: u64,
    kill: Option<Kill>,
}

#[derive(Debug)]
struct SubPlan {
    at: Duration,
    slow: u64,
    block: bool,
    kill: Option<Kill>,
}

#[derive(Debug)]
struct Plan {
    config: TopicConfig,
    subs: Vec<SubPlan>,
    /// Publishers start once every subscriber has subscribed (or died),
    /// their `at` counted from then; else from the round's start.
    pubs_after_subs: bool,
    pubs: Vec<PubPlan>,
    broker: Option<BrokerKill>,
    /// Stop the broker at the end with SIGTERM (else SIGKILL).
    term: bool,
}

impl Plan {
    fn draw(rng: &mut Rng) -> Plan {
        let config = TopicConfig {
            max_message_size: rng.pick(&[64, 256]),
            capacity: rng.pick(&[16, 64, 256]),
            mode: if rng.chance(1, 2) {
                Mode::Backpressure
            } else {
                Mode::Overwrite
            },
            max_subscribers: 16,
        };
        let subs = (0..rng.range(1, 3))
            .map(|_| SubPlan {
                at: rng.micros(0, 40_000),
                slow: rng.pick(&[0, 0, 8, 32, 128]),
                block: rng.chance(1, 2),
                kill: None,
            })
            .collect();
        let pubs = (0..rng.range(1, 3))
            .map(|_| {
                let count = rng.range(200, 3000);
                PubPlan {
                    at: rng.micros(0, 40_000),
                    count,
                    // At most about 400 batches (milliseconds).
                    batch: rng.range(count / 400 + 1, 64),
                    kill: None,
                }
            })
            .collect();
        let mut plan = Plan {
            config,
            subs,
            pubs_after_subs: rng.chance(1, 2),
            pubs,
            broker: None,
            term: rng.chance(1, 2),
        };
        let victims = if rng.chance(1, 4) { 2 } else { 1 };
        for _ in 0..victims {
            // Someone not a victim yet: a subscriber, a publisher (`None`:
            // the broker).
            let mut spared: Vec<Option<Who>> = Vec::new();
            let subs = plan.subs.iter().enumerate();
            spared.extend(
                subs.filter(|(_, s)| s.kill.is_none())
                    .map(|(i, _)| Some(Who::Sub(i))),
            );
            let pubs = plan.pubs.iter().enumerate();
            spared.extend(
                pubs.filter(|(_, p)| p.kill.is_none())
                    .map(|(i, _)| Some(Who::Pub(i))),
            );
            if plan.broker.is_none() {
                spared.push(None);
            }
            let kill = if rng.chance(1, 2) {
                Kill::Itself(rng.kill_delay())
            } else {
                Kill::Parent(rng.kill_delay())
            };
            match rng.pick(&spared) {
                Some(Who::Sub(i)) => plan.subs[i].kill = Some(kill),
                Some(Who::Pub(i)) => plan.pubs[i].kill = Some(kill),
                None => {
                    let anchor = if rng.chance(1, 2) {
                        Who::Sub(rng.next() as usize % plan.subs.len())
                    } else {
                        Who::Pub(rng.next() as usize % plan.pubs.len())
                    };
                    let down = match rng.next() % 3 {
                        0 => Duration::ZERO,
                        1 => rng.micros(0, 50_000),
                        _ => rng.micros(0, 300_000),
                    };
                    plan.broker = Some(BrokerKill {
                        anchor,
                        after: rng.kill_delay(),
                        down,
                        again: rng
                            .chance(1, 3)
                            .then(|| (rng.micros(0, 20_000), rng.micros(0, 50_000))),
                    });
                }
            }
        }
        plan
    }

    fn victims(&self) -> String {
        let mut v: Vec<String> = Vec::new();
        for (i, s) in self.subs.iter().enumerate() {
            if let Some(k) = s.kill {
                v.push(format!("sub{i} {k:?}"));
            }
        }
        for (i, p) in self.pubs.iter().enumerate() {
            if let Some(k) = p.kill {
                v.push(format!("pub{i} {k:?}"));
            }
        }
        if let Some(b) = &self.broker {
            v.push(format!(
                "broker {:?} after {:?} started, down {:?}{}",
                b.after,
                b.anchor,
                b.down,
                match b.again {
                    Some((after, down)) => format!(", again {after:?} after, down {down:?}"),
                    None => String::new(),
                }
            ));
        }
        v.join(", ")
    }
}

// ---------------------------------------------------------------------------
// The parent's side of a round.

/// A child process of the round, killed on drop.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Vec<String>,
    /// Its stdout reached end of file: every line it printed is in `lines`.
    eof: bool,
    status: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid")
    }

    /// SIGKILL, unless it has been reaped already (its pid may be reused).
    fn kill9(&mut self) {
        if self.status.is_none() {
            let _ = rustix::process::kill_process(self.pid(), rustix::process::Signal::KILL);
        }
    }

    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    fn has(&self, prefix: &str) -> bool {
        self.lines.iter().any(|l| l.starts_with(prefix))
    }

    fn word(&self, prefix: &str) -> Option<u64> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        let _ = self.child.wait();
    }
}

/// The broker of a round; its log goes to the round's directory.
struct Broker {
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    fn start(&mut self, dir: &TestDir) {
        assert!(self.child.is_none());
        self.starts += 1;
        let log = File::create(dir.path(&format!("broker-{}.log", self.starts))).unwrap();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--socket")
            .arg(dir.socket())
            .arg("--data-dir")
            .arg(dir.data())
            .env_remove("RINGBUS_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn ringbus serve");
        let socket = dir.socket();
        eventually("the broker to accept clients", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("broker exited early: {status}");
            }
            // The broker's own pid answers: not a dying predecessor's.
            Client::connect(&socket)
                .ok()
                .filter(|c| c.broker_pid() == child.id())
        });
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("a broker").id()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(c.id() as i32).expect("a pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let end = Instant::now() + PATIENCE;
            while c.try_wait().expect("try_wait").is_none() {
                if Instant::now() > end {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("the broker did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

enum Action {
    SpawnSub(usize),
    SpawnPub(usize),
    /// Publishers start once every subscriber has subscribed or died (or
    /// at `until`, a failure): looked at again every millisecond, between
    /// the other actions (a broker restart may be what it waits for).
    Barrier {
        until: Instant,
    },
    KillChild(usize),
    KillBroker {
        again: bool,
    },
    StartBroker {
        again: bool,
    },
}

struct Round<'a> {
    plan: &'a Plan,
    dir: TestDir,
    broker: Broker,
    procs: Vec<Proc>,
    /// Index in `procs` of each subscriber and publisher, once spawned.
    subs: Vec<Option<usize>>,
    pubs: Vec<Option<usize>>,
    /// Per publisher: the subscribers that had said `subscribed` before
    /// it was spawned (they must read its ring to the end).
    before: Vec<Vec<usize>>,
    /// Lines the children print (`None`: end of file), by index in `procs`.
    lines: Receiver<(usize, Option<String>)>,
    tx: Sender<(usize, Option<String>)>,
    pending: Vec<(Instant, Action)>,
    failures: Vec<String>,
    /// Where each victim was when it died (see [`Round::outcomes`]).
    kills: Vec<&'static str>,
}

impl Round<'_> {
    fn new<'a>(plan: &'a Plan, base: &Path) -> Round<'a> {
        let (tx, lines) = channel();
        Round {
            plan,
            dir: TestDir::new_in(base, "round"),
            broker: Broker {
                child: None,
                starts: 0,
            },
            procs: Vec::new(),
            subs: vec![None; plan.subs.len()],
            pubs: vec![None; plan.pubs.len()],
            before: vec![Vec::new(); plan.pubs.len()],
            lines,
            tx,
            pending: Vec::new(),
            failures: Vec::new(),
            kills: Vec::new(),
        }
    }

    /// Takes the lines the children printed so far.
    fn pump(&mut self) {
        while let Ok((i, line)) = self.lines.try_recv() {
            match line {
                Some(l) => self.procs[i].lines.push(l),
                None => self.procs[i].eof = true,
            }
        }
    }

    fn spawn(&mut self, name: String, role: &str, kill: Option<Kill>, extra: &[String]) -> usize {
        let c = &self.plan.config;
        let mut cmd = Command::new(std::env::current_exe().expect("this test's binary"));
        cmd.env(ROLE, role)
            .env_remove("RINGBUS_SOCKET")
            .arg(format!("socket={}", self.dir.socket().display()))
            .arg(format!("mode={}", c.mode))
            .arg(format!("capacity={}", c.capacity))
            .arg(format!("max={}", c.max_message_size))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                File::create(self.dir.path(&format!("{name}.err"))).unwrap(),
            ));
        if let Some(Kill::Itself(d)) = kill {
            cmd.arg(format!("die_after_us={}", d.as_micros()));
        }
        let mut child = cmd.spawn().expect("spawn a child");
        let id = self.procs.len();
        let out = child.stdout.take().expect("piped");
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((id, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((id, None));
        });
        let stdin = child.stdin.take();
        self.procs.push(Proc {
            name,
            child,
            stdin,
            lines: Vec::new(),
            eof: false,
            status: None,
        });
        if let Some(Kill::Parent(d)) = kill {
            self.pending
                .push((Instant::now() + d, Action::KillChild(id)));
        }
        id
    }

    /// Schedules the broker's kill if `who` is its anchor.
    fn anchor(&mut self, who: Who) {
        if let Some(b) = self.plan.broker.filter(|b| b.anchor == who) {
            self.pending.push((
                Instant::now() + b.after,
                Action::KillBroker { again: false },
            ));
        }
    }

    fn run_action(&mut self, a: Action) {
        match a {
            Action::SpawnSub(i) => {
                let s = &self.plan.subs[i];
                let extra = [
                    format!("slow={}", s.slow),
                    format!("wait={}", if s.block { "block" } else { "adaptive" }),
                ];
                self.subs[i] = Some(self.spawn(format!("sub{i}"), "subscriber", s.kill, &extra));
                self.anchor(Who::Sub(i));
            }
            Action::SpawnPub(i) => {
                self.pump();
                self.before[i] = self
                    .subs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.is_some_and(|p| self.procs[p].has("subscribed")))
                    .map(|(s, _)| s)
                    .collect();
                let p = &self.plan.pubs[i];
                let extra = [format!("count={}", p.count), format!("batch={}", p.batch)];
                self.pubs[i] = Some(self.spawn(format!("pub{i}"), "publisher", p.kill, &extra));
                self.anchor(Who::Pub(i));
            }
            Action::Barrier { until } => {
                self.pump();
                let waiting =
                    self.subs.iter().flatten().any(|&p| {
                        !self.procs[p].has("subscribed") && self.procs[p].poll().is_none()
                    });
                let now = Instant::now();
                if waiting && now < until {
                    let again = now + Duration::from_millis(1);
                    self.pending.push((again, Action::Barrier { until }));
                    return;
                }
                if waiting {
                    self.failures
                        .push("subscribers did not subscribe within PATIENCE".into());
                }
                for (i, p) in self.plan.pubs.iter().enumerate() {
                    self.pending.push((now + p.at, Action::SpawnPub(i)));
                }
            }
            Action::KillChild(i) => self.procs[i].kill9(),
            Action::KillBroker { again } => {
                self.broker.kill9();
                let b = self.plan.broker.expect("a broker victim");
                let down = if again {
                    b.again.expect("again").1
                } else {
                    b.down
                };
                self.pending
                    .push((Instant::now() + down, Action::StartBroker { again }));
            }
            Action::StartBroker { again } => {
                self.broker.start(&self.dir);
                let b = self.plan.broker.expect("a broker victim");
                if let (false, Some((after, _))) = (again, b.again) {
                    self.pending
                        .push((Instant::now() + after, Action::KillBroker { again: true }));
                }
            }
        }
    }

    /// A short wait for something to happen, taking children's lines.
    fn idle(&mut self) {
        std::thread::sleep(Duration::from_millis(1));
        self.pump();
    }

    /// Runs the schedule: spawns, kills, restarts.
    fn play(&mut self) {
        let start = Instant::now();
        for (i, s) in self.plan.subs.iter().enumerate() {
            self.pending.push((start + s.at, Action::SpawnSub(i)));
        }
        if self.plan.pubs_after_subs {
            let last = self
                .plan
                .subs
                .iter()
                .map(|s| s.at)
                .max()
                .unwrap_or_default();
            let until = start + last + PATIENCE;
            self.pending.push((start + last, Action::Barrier { until }));
        } else {
            for (i, p) in self.plan.pubs.iter().enumerate() {
                self.pending.push((start + p.at, Action::SpawnPub(i)));
            }
        }
        while !self.pending.is_empty() {
            // The earliest action (on ties, the first scheduled).
            let (k, _) = self
                .pending
                .iter()
                .enumerate()
                .min_by_key(|(k, (t, _))| (*t, *k))
                .expect("not empty");
            let due = self.pending[k].0;
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(1)));
                self.pump();
                continue;
            }
            let (_, a) = self.pending.remove(k);
            self.run_action(a);
        }
    }

    fn is_victim(&self, who: Who) -> bool {
        match who {
            Who::Pub(i) => self.plan.pubs[i].kill.is_some(),
            Who::Sub(i) => self.plan.subs[i].kill.is_some(),
        }
    }

    /// Waits for the children in `which` to exit, with every line they
    /// printed.
    fn wait_exit(&mut self, which: &[usize], what: &str) {
        let end = Instant::now() + 2 * PATIENCE;
        for &i in which {
            while self.procs[i].poll().is_none() || !self.procs[i].eof {
                if Instant::now() > end {
                    self.failures.push(format!(
                        "{} did not exit ({what}) within {:?}",
                        self.procs[i].name,
                        2 * PATIENCE
                    ));
                    self.procs[i].kill9();
                    break;
                }
                self.idle();
            }
        }
    }

    /// Notes where each victim was when it died: what the kills hit.
    /// `late`: subscribers that outlived their kill time (killed now).
    fn outcomes(&mut self, late: &[usize]) {
        use std::os::unix::process::ExitStatusExt;
        for (i, p) in self.subs.clone().into_iter().enumerate() {
            let Some(p) = p.filter(|_| self.is_victim(Who::Sub(i))) else {
                continue;
            };
            let pr = &self.procs[p];
            self.kills
                .push(match (late.contains(&p), pr.has("subscribed")) {
                    (true, _) => "subscriber outlived its kill",
                    (false, false) => "subscriber killed subscribing",
                    (false, true) => "subscriber killed reading",
                });
        }
        for (i, p) in self.pubs.clone().into_iter().enumerate() {
            let Some(p) = p.filter(|_| self.is_victim(Who::Pub(i))) else {
                continue;
            };
            let pr = &mut self.procs[p];
            let killed = pr.poll().is_some_and(|s| s.signal() == Some(9));
            self.kills
                .push(match (killed, pr.has("ring"), pr.has("done")) {
                    (false, ..) => "publisher outlived its kill",
                    (true, false, _) => "publisher killed attaching",
                    (true, true, false) => "publisher killed publishing",
                    (true, true, true) => "publisher killed leaving",
                });
        }
        if let Some(b) = &self.plan.broker {
            self.kills.push(match b.again {
                Some(_) => "broker killed twice",
                None => "broker killed",
            });
        }
    }

    /// The round after its schedule: publishers finish, subscribers are
    /// told to end, and what every survivor saw is checked.
    fn finish(&mut self) {
        // Every publisher ends (a victim that outlived its kill time too).
        let pubs: Vec<usize> = self.pubs.iter().flatten().copied().collect();
        self.wait_exit(&pubs, "publishing");
        // Victims are done being victims: whichever still lives is killed.
        let mut late = Vec::new();
        for (i, s) in self.subs.clone().into_iter().enumerate() {
            if let (Some(p), true) = (s, self.is_victim(Who::Sub(i))) {
                if self.procs[p].poll().is_none() {
                    self.procs[p].kill9();
                    late.push(p);
                }
            }
        }
        self.outcomes(&late);
        let mut counts: Vec<Option<(u64, u64)>> = Vec::new();
        for (i, p) in self.pubs.clone().into_iter().enumerate() {
            let Some(p) = p else {
                counts.push(None);
                continue;
            };
            let victim = self.is_victim(Who::Pub(i));
            let pr = &self.procs[p];
            if pr.has("FAIL") {
                self.failures.push(format!("pub{i}: {:?}", pr.lines));
            } else if !victim && !pr.status.is_some_and(|s| s.success()) {
                self.failures.push(format!(
                    "pub{i} exited with {:?}: {:?}",
                    pr.status, pr.lines
                ));
            }
            // A ring and a count: a publisher that published all it had.
            counts.push(pr.word("ring ").zip(pr.word("done ")));
        }
        let pid = self.broker.pid();
        let mut survivors = Vec::new();
        for (s, p) in self.subs.clone().into_iter().enumerate() {
            let Some(p) = p else { continue };
            if self.is_victim(Who::Sub(s)) {
                continue;
            }
            // The rings this subscriber must read to the end: those of
            // publishers that started after it had subscribed.
            let must: Vec<u64> = (0..self.pubs.len())
                .filter(|&i| self.before[i].contains(&s))
                .filter_map(|i| self.pubs[i].and_then(|p| self.procs[p].word("ring ")))
                .collect();
            let mut cmd = format!("end {pid}");
            for r in &must {
                cmd.push_str(&format!(" {r}"));
            }
            if let Some(stdin) = self.procs[p].stdin.as_mut() {
                let _ = writeln!(stdin, "{cmd}");
            }
            survivors.push((s, p, must));
        }
        let ps: Vec<usize> = survivors.iter().map(|&(_, p, _)| p).collect();
        self.wait_exit(&ps, "subscribed");
        for (s, p, must) in survivors {
            self.check_subscriber(s, p, &must, &counts);
        }
    }

    fn check_subscriber(
        &mut self,
        s: usize,
        p: usize,
        must: &[u64],
        counts: &[Option<(u64, u64)>],
    ) {
        let pr = &self.procs[p];
        let mut f = Vec::new();
        if pr.has("FAIL") || !pr.has("ok") || !pr.status.is_some_and(|s| s.success()) {
            f.push(format!(
                "sub{s} exited with {:?}: {:?}",
                pr.status,
                pr.lines
                    .iter()
                    .filter(|l| !l.starts_with("saw "))
                    .collect::<Vec<_>>()
            ));
        }
        // saw RING JOIN NEXT RECEIVED MISSED PENDING ENDED
        let mut saw = BTreeMap::new();
        for l in &pr.lines {
            if let Some(rest) = l.strip_prefix("saw ") {
                let v: Vec<u64> = rest.split(' ').map(|w| w.parse().unwrap()).collect();
                saw.insert(v[0], v);
            }
        }
        for r in must {
            if !saw.get(r).is_some_and(|v| v[6] == 1) {
                f.push(format!("sub{s} did not read ring {r} to its end"));
            }
        }
        for (i, c) in counts.iter().enumerate() {
            let Some((ring, n)) = *c else { continue };
            let Some(v) = saw.get(&ring) else { continue };
            let (join, next, received, missed, pending) = (v[1], v[2], v[3], v[4], v[5]);
            if next + pending != n || Some(received + missed) != n.checked_sub(join) {
                f.push(format!(
                    "sub{s}, ring {ring} of pub{i} ({n} messages): joined at {join}, \
                     next {next}, received {received}, reported lost {missed} ({pending} at the end)"
                ));
            }
            if self.before[i].contains(&s) && join != 0 {
                f.push(format!(
                    "sub{s} subscribed before pub{i} started but joined ring {ring} at {join}"
                ));
            }
        }
        self.failures.extend(f);
    }

    /// What a failing round leaves to read: every child's lines, the logs.
    fn report(&mut self) -> String {
        self.pump();
        let mut r = String::new();
        for p in &self.procs {
            let err = std::fs::read_to_string(self.dir.path(&format!("{}.err", p.name)))
                .unwrap_or_default();
            r.push_str(&format!(
                "--- {} (pid {}, {:?}): {:?}\n{err}",
                p.name,
                p.child.id(),
                p.status,
                p.lines
            ));
        }
        for k in 1..=self.broker.starts {
            let log = std::fs::read_to_string(self.dir.path(&format!("broker-{k}.log")))
                .unwrap_or_default();
            r.push_str(&format!("--- broker start {k}:\n{log}"));
        }
        if self.broker.child.is_some() {
            if let Ok(out) = ringbus(&self.dir.socket())
                .args(["topics", "--json"])
                .output()
            {
                r.push_str(&format!(
                    "--- topics: {}\n",
                    String::from_utf8_lossy(&out.stdout)
                ));
            }
        }
        r
    }
}

/// One round of seed `seed`; `Err` with what went wrong.
fn round(seed: u64, base: &Path) -> Result<(String, Vec<&'static str>), String> {
    let mut rng = Rng(seed);
    let plan = Plan::draw(&mut rng);
    let started = Instant::now();
    let mut r = Round::new(&plan, base);
    r.broker.start(&r.dir);
    r.play();
    r.finish();
    if r.failures.is_empty() {
        if plan.term {
            r.broker.stop();
        } else {
            r.broker.kill9();
        }
        let summary = format!(
            "{} cap {}, {} sub(s), {} pub(s){}; victims: {}; {} ms",
            plan.config.mode,
            plan.config.capacity,
            plan.subs.len(),
            plan.pubs.len(),
            if plan.pubs_after_subs {
                " after the subs"
            } else {
                ""
            },
            plan.victims(),
            started.elapsed().as_millis()
        );
        return Ok((summary, std::mem::take(&mut r.kills)));
    }
    let report = r.report();
    Err(format!(
        "{}\nplan: {plan:#?}\n{report}",
        r.failures.join("\n")
    ))
}

/// Pids of live processes whose command line mentions `dir`.
fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        // A zombie has an empty command line: not running anything.
        if cmd.contains(&needle) {
            found.push((pid, cmd));
        }
    }
    found
}

fn chaos() {
    let rounds: u64 = std::env::var("RINGBUS_CHAOS_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("RINGBUS_CHAOS_ROUNDS: a number"))
        .unwrap_or(100);
    let mut seed: u64 = match std::env::var("RINGBUS_CHAOS_SEED") {
        Ok(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            }
            .expect("RINGBUS_CHAOS_SEED: a number")
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64,
    };
    let base = TestDir::new("chaos");
    let started = Instant::now();
    eprintln!("chaos: {rounds} rounds from seed {seed:#x}");
    let mut kills: BTreeMap<&str, u64> = BTreeMap::new();
    for n in 0..rounds {
        match round(seed, &base.0) {
            Ok((summary, hit)) => {
                eprintln!("chaos round {n}: seed {seed:#x}: {summary}");
                for k in hit {
                    *kills.entry(k).or_default() += 1;
                }
            }
            Err(why) => panic!(
                "chaos round {n} failed: replay it with RINGBUS_CHAOS_SEED={seed:#x} \
                 RINGBUS_CHAOS_ROUNDS=1\n{why}"
            ),
        }
        seed = next_seed(seed);
    }
    eprintln!(
        "chaos: {rounds} rounds passed in {:.1} s; kills: {kills:?}",
        started.elapsed().as_secs_f64()
    );
    // Nothing is left behind: the children are reaped, and each round's
    // keeper exits by itself once its broker and owners are gone.
    let end = Instant::now() + PATIENCE;
    loop {
        let left = processes_under(&base.0);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "processes of the rounds still running {PATIENCE:?} after the last: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> std::process::ExitCode {
    if let Ok(role) = std::env::var(ROLE) {
        // A child dies with the test (a panic there kills no one).
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        let params = Params::from_args();
        match role.as_str() {
            "publisher" => child_publisher(&params),
            "subscriber" => child_subscriber(&params),
            other => panic!("unknown child role {other:?}"),
        }
        return std::process::ExitCode::SUCCESS;
    }
    let args = Arguments::from_args();
    let tests = vec![Trial::test("chaos", || {
        chaos();
        Ok(())
    })];
    libtest_mimic::run(&args, tests).exit_code()
}
