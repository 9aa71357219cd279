//! The bench's child processes: the spec the parent hands each one (as a
//! JSON argument), spawning with inherited descriptors, a watchdog per child,
//! and the result each child writes to its stdout.
//!
//! A child is `current_exe() __bench-child <spec>`; it pins itself, maps the
//! parent's memfd, waits at the start barrier, plays its role, and prints one
//! JSON [`SideResult`]. It dies with the parent (`PR_SET_PDEATHSIG`); the
//! parent notices a dead child through the watchdog, which raises the abort
//! flag that every wait loop checks.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::params::{Params, SideResult};
use super::ring::Link;
use super::scenario::Scenario;
use super::shared::Region;

/// The hidden subcommand that runs a bench child: `ringbus __bench-child
/// <SPEC>`. The CLI must route it to [`super::child_main`].
pub const CHILD_SUBCOMMAND: &str = "__bench-child";

/// Everything a child needs, passed as its one argument.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildSpec {
    /// What to run.
    pub scenario: Scenario,
    /// 1-based index among the children (subscriber number).
    pub role: u32,
    /// CPU to pin to.
    pub cpu: usize,
    /// The parent's pid, to detect a parent that died before
    /// `PR_SET_PDEATHSIG` took effect.
    pub parent_pid: i32,
    /// Inherited memfd of the shared region, and its length.
    pub shm_fd: i32,
    /// Length of the shared region in bytes.
    pub shm_len: usize,
    /// Inherited socket, for the Unix-socket baseline.
    pub sock_fd: Option<i32>,
    /// How to reach the rings under test (ringbus scenarios).
    pub link: Option<Link>,
    /// Counts and knobs.
    pub params: Params,
}

struct Running {
    role: u32,
    pid: rustix::process::Pid,
    stdout: ChildStdout,
    watchdog: JoinHandle<std::io::Result<ExitStatus>>,
}

/// The children of one measurement. Dropping it before [`Children::finish`]
/// kills them.
pub struct Children {
    running: Vec<Running>,
    region: Arc<Region>,
}

/// Clears `FD_CLOEXEC` on `fds` for the duration of `f`, so a child spawned
/// in `f` inherits them. The bench spawns from one thread, so no other exec
/// can pick them up meanwhile.
fn with_inherited<T>(fds: &[BorrowedFd<'_>], f: impl FnOnce() -> T) -> Result<T> {
    use rustix::io::{fcntl_setfd, FdFlags};
    for fd in fds {
        fcntl_setfd(fd, FdFlags::empty()).context("clearing FD_CLOEXEC for a bench child")?;
    }
    let out = f();
    for fd in fds {
        fcntl_setfd(fd, FdFlags::CLOEXEC).context("restoring FD_CLOEXEC")?;
    }
    Ok(out)
}

impl Children {
    /// Spawns one child per spec from `exe`; `region` and `extra` descriptors
    /// are inherited.
    pub fn spawn(
        exe: &Path,
        region: &Arc<Region>,
        specs: &[ChildSpec],
        extra: &[BorrowedFd<'_>],
    ) -> Result<Children> {
        let mut children = Children {
            running: Vec::with_capacity(specs.len()),
            region: Arc::clone(region),
        };
        let mut fds = vec![region.borrowed_fd()];
        fds.extend(extra.iter().map(|f| f.as_fd()));
        for spec in specs {
            let json = serde_json::to_string(spec).context("encoding a bench child's spec")?;
            let child: Child = with_inherited(&fds, || {
                Command::new(exe)
                    .arg(CHILD_SUBCOMMAND)
                    .arg(&json)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
            })?
            .with_context(|| format!("starting bench child {}", exe.display()))?;
            children.adopt(spec.role, child)?;
        }
        Ok(children)
    }

    fn adopt(&mut self, role: u32, mut child: Child) -> Result<()> {
        let pid = rustix::process::Pid::from_raw(child.id() as i32)
            .ok_or_else(|| anyhow!("bench child has pid 0"))?;
        let stdout = child
            .stdout
            .take()
            .context("bench child has no stdout pipe")?;
        let region = Arc::clone(&self.region);
        let watchdog = std::thread::Builder::new()
            .name(format!("bench-watchdog-{role}"))
            .spawn(move || {
                let status = child.wait();
                if !matches!(&status, Ok(s) if s.success()) {
                    // A dead peer would leave the others spinning: stop them.
                    region.control().abort.store(1, Ordering::Relaxed);
                }
                status
            })
            .context("starting a watchdog thread")?;
        self.running.push(Running {
            role,
            pid,
            stdout,
            watchdog,
        });
        Ok(())
    }

    /// Waits for every child to finish and collects their results.
    pub fn finish(mut self) -> Result<Vec<SideResult>> {
        let mut results = Vec::with_capacity(self.running.len());
        let running = std::mem::take(&mut self.running);
        let mut first_err: Option<anyhow::Error> = None;
        for mut r in running {
            let mut out = String::new();
            let read = r.stdout.read_to_string(&mut out);
            let status = r
                .watchdog
                .join()
                .map_err(|_| anyhow!("watchdog thread panicked"))?
                .with_context(|| format!("waiting for bench child {}", r.role))?;
            let res = (|| -> Result<SideResult> {
                read.context("reading a bench child's result")?;
                if !status.success() {
                    bail!(
                        "bench child {} failed ({status}); its error is above",
                        r.role
                    );
                }
                serde_json::from_str(out.trim())
                    .with_context(|| format!("bench child {} sent a bad result", r.role))
            })();
            match res {
                Ok(v) => results.push(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        self.region.control().abort.store(1, Ordering::Relaxed);
        for r in self.running.drain(..) {
            // The watchdog still owns the `Child`, so the pid cannot have
            // been reaped and reused yet.
            let _ = rustix::process::kill_process(r.pid, rustix::process::Signal::KILL);
            let _ = r.watchdog.join();
        }
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> Result<()> {
    ringbus::wait::pin_current_thread(cpu).context("pinning a bench process")
}

/// Child side, up to the scenario: decode, tie our life to the parent's,
/// pin, map.
pub fn child_setup(spec_json: &str) -> Result<(ChildSpec, Region)> {
    let spec: ChildSpec = serde_json::from_str(spec_json).with_context(|| {
        format!("`{CHILD_SUBCOMMAND}` is internal to `ringbus bench`; bad spec")
    })?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .context("prctl(PR_SET_PDEATHSIG)")?;
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if parent != Some(spec.parent_pid) {
        bail!("the bench parent ({}) is gone", spec.parent_pid);
    }
    pin(spec.cpu)?;
    let region = Region::open(spec.shm_fd, spec.shm_len)?;
    Ok((spec, region))
}
