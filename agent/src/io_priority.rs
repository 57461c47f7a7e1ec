//! Backups read at idle I/O priority, so carbon's own reads and writes go first.
//!
//! Linux keeps an I/O priority per thread. Backup reads run on tokio's shared blocking pool,
//! where the next task on the same thread may be a restore that must not crawl, so
//! [`IdleIo`] lowers the calling thread's priority and gives the previous one back when it
//! drops. The class is honoured by the BFQ scheduler (and by mq-deadline since Linux 5.14);
//! `none` ignores it.
//!
//! The standard library and rustix have no wrapper for `ioprio_set(2)`, so this module makes
//! the two system calls itself; they take and return plain integers.
#![allow(unsafe_code)]

/// `IOPRIO_WHO_PROCESS` with `who = 0`: the calling thread.
const WHO_PROCESS: libc::c_long = 1;
const CLASS_SHIFT: u32 = 13;

/// An I/O scheduling class, as `ionice -c` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No class set: best effort derived from the nice value.
    None,
    /// Real time.
    Realtime,
    /// Best effort.
    BestEffort,
    /// Served only when no other I/O is pending.
    Idle,
}

/// The calling thread's I/O scheduling class; `None` where the kernel does not say.
pub fn current_class() -> Option<Class> {
    get().map(|value| match value >> CLASS_SHIFT {
        1 => Class::Realtime,
        2 => Class::BestEffort,
        3 => Class::Idle,
        _ => Class::None,
    })
}

/// The calling thread at idle I/O priority until this is dropped.
#[must_use = "the priority is restored when the guard drops"]
#[derive(Debug)]
pub struct IdleIo {
    previous: Option<libc::c_long>,
}

impl IdleIo {
    /// Lowers the calling thread to the idle class when `enabled`. Failing to is not an
    /// error: the backup then runs at the thread's normal priority.
    pub fn enter(enabled: bool) -> IdleIo {
        let previous = enabled
            .then(get)
            .flatten()
            .filter(|_| set(3 << CLASS_SHIFT));
        IdleIo { previous }
    }
}

impl Drop for IdleIo {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            set(previous);
        }
    }
}

#[cfg(target_os = "linux")]
fn get() -> Option<libc::c_long> {
    // SAFETY: ioprio_get takes two integers and touches no memory of ours.
    let value = unsafe { libc::syscall(libc::SYS_ioprio_get, WHO_PROCESS, 0 as libc::c_long) };
    (value >= 0).then_some(value)
}

#[cfg(target_os = "linux")]
fn set(value: libc::c_long) -> bool {
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_ioprio_set, WHO_PROCESS, 0 as libc::c_long, value) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn get() -> Option<libc::c_long> {
    None
}

#[cfg(not(target_os = "linux"))]
fn set(_: libc::c_long) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn idle_while_held_then_the_previous_class_again() {
        let here = current_class().expect("Linux reports the class");
        let (held, released) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let worker = std::thread::spawn(move || {
            let before = current_class().expect("Linux reports the class");
            assert_ne!(before, Class::Idle);
            {
                let _idle = IdleIo::enter(true);
                assert_eq!(current_class(), Some(Class::Idle));
                held.0.send(()).unwrap();
                released.1.recv().unwrap();
            }
            assert_eq!(current_class(), Some(before));
            let _off = IdleIo::enter(false);
            assert_eq!(current_class(), Some(before));
        });
        held.1.recv().unwrap();
        // The priority is the thread's own: this thread is untouched while the worker idles.
        assert_eq!(current_class(), Some(here));
        released.0.send(()).unwrap();
        worker.join().unwrap();
    }
}
