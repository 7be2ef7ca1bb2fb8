//! Log lines written by a thread of their own, on a clock: [`batched`].
//!
//! A request's worker appends its formatted line to a shared buffer under a lock and goes
//! on; it wakes nobody. The writer thread wakes every interval (or as soon as the buffer
//! holds [`EARLY`] bytes), takes the whole buffer and writes it with one `write_all`.
//! `tracing-appender`'s non-blocking writer, used before, woke its thread for every line
//! (a channel send and a futex wake on the worker, a wake-up, a `write` and a park on the
//! writer): in a profile of `GET /products/{id}` at 16 connections those were 11 % of the
//! server's CPU, more than formatting the lines.
//!
//! Never lossy: once [`CAP`] bytes wait (the output is slower than the lines), a worker
//! waits for the writer to take them rather than dropping its line. Dropping the
//! [`LinesGuard`] (SIGTERM, a return from `main`) writes out what waits before it
//! returns; a line logged after that is written by its own thread, directly.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes waiting that wake the writer before its interval ends.
const EARLY: usize = 256 * 1024;
/// Bytes waiting at which a worker waits for the writer instead of adding its line.
const CAP: usize = 8 * 1024 * 1024;

type Output = Box<dyn Write + Send>;

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// The guard dropped: the writer writes what waits and stops.
    stopping: bool,
    /// The writer stopped: lines are written by their own thread, to `output`.
    stopped: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits on it for its interval, woken early at [`EARLY`] or to stop.
    wake: Condvar,
    /// Workers at [`CAP`] wait on it for the writer to take the buffer.
    room: Condvar,
    /// Where the lines go; the writer holds it while it writes.
    output: Mutex<Output>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_out(&self, bytes: &[u8]) {
        let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        // Nowhere to report a failed log write: stdout is where errors would go.
        let _ = output.write_all(bytes).and_then(|()| output.flush());
    }
}

/// The writer handed to `tracing-subscriber` (`with_writer`); cheap to clone.
#[derive(Clone)]
pub struct LineWriter(Arc<Shared>);

/// Writes out what waits and stops the writer thread when dropped.
pub struct LinesGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A [`LineWriter`] into `output`, written by a thread named `name` every `interval`.
pub fn batched(
    output: impl Write + Send + 'static,
    name: &str,
    interval: Duration,
) -> std::io::Result<(LineWriter, LinesGuard)> {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
        room: Condvar::new(),
        output: Mutex::new(Box::new(output)),
    });
    let writer = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || write_until_stopped(&writer, interval))?;
    Ok((
        LineWriter(Arc::clone(&shared)),
        LinesGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_until_stopped(shared: &Shared, interval: Duration) {
    let mut taken = Vec::new();
    loop {
        let queue = shared.queue();
        let (mut queue, _) = shared
            .wake
            .wait_timeout_while(queue, interval, |q| !q.stopping && q.bytes.len() < EARLY)
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut queue.bytes, &mut taken);
        let stopping = queue.stopping;
        drop(queue);
        shared.room.notify_all();
        if !taken.is_empty() {
            shared.write_out(&taken);
            taken.clear();
            // A burst's buffer is not kept for good.
            taken.shrink_to(EARLY);
        }
        if stopping {
            // Lines logged while this one wrote, then none: later lines write themselves.
            let mut queue = shared.queue();
            let rest = std::mem::take(&mut queue.bytes);
            queue.stopped = true;
            drop(queue);
            shared.room.notify_all();
            if !rest.is_empty() {
                shared.write_out(&rest);
            }
            return;
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut queue = shared.queue();
        while queue.bytes.len() >= CAP && !queue.stopped {
            shared.wake.notify_one();
            queue = shared
                .room
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if queue.stopped {
            drop(queue);
            shared.write_out(line);
            return Ok(line.len());
        }
        queue.bytes.extend_from_slice(line);
        if queue.bytes.len() >= EARLY {
            shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // The writer flushes what it writes; a line is out within one interval.
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LinesGuard {
    fn drop(&mut self) {
        self.shared.queue().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that keeps what it is given, and counts the writes.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut kept = self.0.lock().unwrap();
            kept.0.extend_from_slice(bytes);
            kept.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Kept {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    #[test]
    fn lines_of_many_threads_are_written_whole_in_few_writes_and_none_is_lost_at_the_guard() {
        let kept = Kept::default();
        // An interval longer than the test: only the guard writes them out.
        let (writer, guard) =
            batched(kept.clone(), "test-logs", Duration::from_secs(3600)).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        writer
                            .write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(kept.writes(), 0, "nothing is written before the interval");
        drop(guard);
        let text = kept.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4000);
        for t in 0..4 {
            let of: Vec<&str> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .copied()
                .collect();
            let expected: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(of, expected, "thread {t}'s lines, whole and in order");
        }
        assert_eq!(kept.writes(), 1, "one write for all of them");
        // After the guard, a line is written by its own thread.
        let mut late = writer.clone();
        late.write_all(b"late\n").unwrap();
        assert!(kept.text().ends_with("late\n"));
    }

    #[test]
    fn a_line_is_out_within_the_interval_and_a_full_buffer_wakes_the_writer() {
        let kept = Kept::default();
        let (mut writer, _guard) =
            batched(kept.clone(), "test-logs", Duration::from_millis(10)).unwrap();
        writer.write_all(b"one\n").unwrap();
        let soon = std::time::Instant::now() + Duration::from_secs(5);
        while kept.text() != "one\n" {
            assert!(std::time::Instant::now() < soon, "not written within 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        // More than the cap from one thread: it waits for the writer rather than dropping.
        let line = vec![b'x'; 1023];
        for _ in 0..(3 * CAP / 1024) {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        let soon = std::time::Instant::now() + Duration::from_secs(10);
        while kept.text().len() < 4 + 3 * CAP {
            assert!(std::time::Instant::now() < soon, "lines lost");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(kept.text().len(), 4 + 3 * CAP);
    }
}
