//! The daemon binary as a child process: its log collected line by line by a thread, read
//! in order by waits that end on a line (bounded), and a watchdog that kills it (failing
//! the test) if it still runs after 40 s.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a wait for a log line may take.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Process {
    child: Child,
    pid: String,
    log: Arc<Mutex<Vec<String>>>,
    /// Lines before this one were consumed by earlier waits.
    cursor: usize,
    done: std::sync::mpsc::Sender<()>,
}

impl Process {
    /// `casefile run --config cfg` with `RUST_LOG=info`.
    pub fn start(cfg: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_casefile"))
            .args(["run", "--config"])
            .arg(cfg)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let (done, stopped) = std::sync::mpsc::channel::<()>();
        let watchdog = pid.clone();
        std::thread::spawn(move || {
            if stopped.recv_timeout(Duration::from_secs(40)).is_err() {
                let _ = Command::new("kill").args(["-KILL", &watchdog]).status();
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sink, stderr) = (Arc::clone(&log), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().push(line);
            }
        });
        Process {
            child,
            pid,
            log,
            cursor: 0,
            done,
        }
    }

    /// The next unread line satisfying `pred`, consuming the lines up to it.
    fn next_match(&mut self, pred: &impl Fn(&str) -> bool) -> Option<String> {
        let log = self.log.lock();
        let i = log[self.cursor..].iter().position(|l| pred(l))? + self.cursor;
        self.cursor = i + 1;
        Some(log[i].clone())
    }

    fn give_up(&mut self, what: &str) -> ! {
        let exited = self.child.try_wait().ok().flatten();
        panic!(
            "no log line with {what} (exited: {exited:?}); log:\n{}",
            self.log.lock().join("\n")
        );
    }

    /// Blocks (at most 20 s) for the next line satisfying `pred`.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(l) = self.next_match(&pred) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.give_up(what)
    }

    /// As [`Process::wait_line`] for a line containing `needle`, without blocking the
    /// runtime (the test's own servers run on it).
    pub async fn line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(l) = self.next_match(&|l: &str| l.contains(needle)) {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.give_up(needle)
    }

    /// The address a listener logged, e.g. `listener = "OTLP/gRPC receiver"`.
    pub fn addr_in(line: &str, listener: &str) -> Option<String> {
        let rest = line
            .split(&format!("{listener} listening addr=Some("))
            .nth(1)?;
        Some(rest.split(')').next()?.to_owned())
    }

    /// The address a listener logged, from anywhere in the log (listeners start in any
    /// order), waiting at most 20 s. Consumes nothing.
    fn find_addr(&self, listener: &str) -> Option<String> {
        self.log
            .lock()
            .iter()
            .find_map(|l| Self::addr_in(l, listener))
    }

    pub fn wait_addr(&mut self, listener: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(a) = self.find_addr(listener) {
                return a;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.give_up(listener)
    }

    pub async fn addr(&mut self, listener: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(a) = self.find_addr(listener) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.give_up(listener)
    }

    /// Its resident memory, from /proc.
    pub fn resident(&self) -> u64 {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).unwrap_or_default();
        statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
            * 4096
    }

    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill")
            .args([sig, &self.pid])
            .status()
            .unwrap()
            .success());
    }

    /// SIGTERM, then waits for the exit: whether it exited 0, and the whole log.
    pub fn stop(mut self) -> (bool, Vec<String>) {
        self.signal("-TERM");
        let ok = self.child.wait().unwrap().success();
        let _ = self.done.send(());
        // The reader thread ends at EOF, just after the exit.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&self.log) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let log = self.log.lock().clone();
        (ok, log)
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let _ = self.done.send(());
    }
}
