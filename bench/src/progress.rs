//! Progress on stderr: on a terminal, one line rewritten in place; anywhere
//! else (a CI log, a pipe), one plain line per step, so a log shows how far
//! a run got and which step a failure or a stall came at. stdout (the
//! table or the JSON) never carries progress.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress over a known number of steps.
pub struct Progress<W: Write = std::io::Stderr> {
    out: W,
    total: usize,
    done: usize,
    tty: bool,
    started: Instant,
}

impl Progress {
    /// Progress of `total` steps on stderr.
    pub fn new(total: usize) -> Progress {
        let tty = std::io::stderr().is_terminal();
        Progress::to(std::io::stderr(), tty, total)
    }
}

impl<W: Write> Progress<W> {
    /// Progress of `total` steps written to `out`, a terminal if `tty`.
    pub fn to(out: W, tty: bool, total: usize) -> Progress<W> {
        Progress {
            out,
            total,
            done: 0,
            tty,
            started: Instant::now(),
        }
    }

    /// Announces the next step. Errors writing progress are ignored: it is
    /// never worth failing a run for.
    pub fn step(&mut self, what: &str) {
        self.done += 1;
        let (done, total) = (self.done, self.total);
        let _ = if self.tty {
            write!(
                self.out,
                "\r\x1b[2K[{done:>3}/{total}] {:>5.1}s  {what}",
                self.started.elapsed().as_secs_f64()
            )
        } else {
            writeln!(self.out, "[{done}/{total}] {what}")
        };
        let _ = self.out.flush();
    }

    /// Clears the terminal's line (plain lines stay).
    pub fn finish(&mut self) {
        if self.tty {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
        }
    }
}

impl<W: Write> Drop for Progress<W> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_when_not_a_terminal() {
        let mut out = Vec::new();
        {
            let mut p = Progress::to(&mut out, false, 2);
            p.step("run 1/1: floor: cache line ping-pong");
            p.step("run 1/1: ringbus spin/overwrite ping-pong (64 B)");
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[1/2] run 1/1: floor: cache line ping-pong\n\
             [2/2] run 1/1: ringbus spin/overwrite ping-pong (64 B)\n"
        );
    }

    #[test]
    fn one_line_rewritten_on_a_terminal() {
        let mut out = Vec::new();
        {
            let mut p = Progress::to(&mut out, true, 2);
            p.step("a");
            p.step("b");
        }
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains('\n'), "{s:?}");
        assert!(s.contains("[  2/2]") && s.ends_with("\r\x1b[2K"), "{s:?}");
    }
}
