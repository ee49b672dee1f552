//! A socket's packets, applied in arrival order by a task that exists only while some wait.
//!
//! A session used to keep a task and a channel for its whole life (~1.2 KB per socket, most of
//! which never send). Here the first packet spawns the task that applies the waiting ones, and
//! the task ends once none is left; the next packet spawns another. One task at a time, so the
//! order is the arrival order. Ending the session is the last item: it runs once, after every
//! packet that arrived before it.

use std::collections::VecDeque;

use parking_lot::Mutex;

pub struct Inbox<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    /// A task is applying items (or starting the session, or ending it).
    running: bool,
    /// The session is to end once its items are applied.
    ending: bool,
    /// The end was handed to a task: nothing runs after it.
    ended: bool,
}

/// What the running task does next.
pub enum Next<T> {
    Apply(T),
    /// Every item is applied and the session is over: end it (once).
    End,
    /// Nothing waits: the task stops (another starts with the next item).
    Stop,
}

/// Why an item was given back.
pub enum Refused<T> {
    /// `capacity` items wait already.
    Full(T),
    /// The session is ending.
    Ended(T),
}

/// Whether the caller must spawn the task that drains the inbox.
#[must_use]
pub enum Pushed {
    SpawnTask,
    Queued,
}

impl<T> Inbox<T> {
    /// An inbox whose first task is running already (the session's start).
    pub fn running(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State {
                items: VecDeque::new(),
                running: true,
                ending: false,
                ended: false,
            }),
        }
    }

    /// Queues an item; gives it back when `capacity` wait already or the session is ending.
    pub fn push(&self, item: T) -> Result<Pushed, Refused<T>> {
        let mut state = self.state.lock();
        if state.ending {
            return Err(Refused::Ended(item));
        }
        if state.items.len() >= self.capacity {
            return Err(Refused::Full(item));
        }
        state.items.push_back(item);
        Ok(state.claim())
    }

    /// The session is to end after what was queued; `SpawnTask` when no task runs to end it.
    pub fn end(&self) -> Option<Pushed> {
        let mut state = self.state.lock();
        if state.ending {
            return None;
        }
        state.ending = true;
        Some(state.claim())
    }

    /// For the running task: its next step.
    pub fn next(&self) -> Next<T> {
        let mut state = self.state.lock();
        if let Some(item) = state.items.pop_front() {
            return Next::Apply(item);
        }
        // An idle session keeps no buffer.
        state.items = VecDeque::new();
        if state.ending && !state.ended {
            state.ended = true;
            return Next::End;
        }
        if !state.ended {
            state.running = false;
        }
        Next::Stop
    }
}

impl<T> State<T> {
    fn claim(&mut self) -> Pushed {
        if self.running {
            Pushed::Queued
        } else {
            self.running = true;
            Pushed::SpawnTask
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(inbox: &Inbox<u32>) -> (Vec<u32>, bool) {
        let mut applied = Vec::new();
        loop {
            match inbox.next() {
                Next::Apply(item) => applied.push(item),
                Next::End => return (applied, true),
                Next::Stop => return (applied, false),
            }
        }
    }

    #[test]
    fn the_first_item_after_a_stop_spawns_a_task_and_the_others_wait_for_it() {
        let inbox = Inbox::running(8);
        assert!(matches!(inbox.push(1), Ok(Pushed::Queued)));
        assert_eq!(drain(&inbox), (vec![1], false));
        assert!(matches!(inbox.push(2), Ok(Pushed::SpawnTask)));
        assert!(matches!(inbox.push(3), Ok(Pushed::Queued)));
        assert_eq!(drain(&inbox), (vec![2, 3], false));
    }

    #[test]
    fn a_full_inbox_gives_the_item_back() {
        let inbox = Inbox::running(1);
        assert!(inbox.push(1).is_ok());
        assert!(matches!(inbox.push(2), Err(Refused::Full(2))));
    }

    #[test]
    fn the_end_comes_after_every_queued_item_and_once() {
        let inbox = Inbox::running(8);
        assert!(inbox.push(1).is_ok());
        assert!(matches!(inbox.end(), Some(Pushed::Queued)));
        assert!(inbox.end().is_none());
        assert!(matches!(inbox.push(2), Err(Refused::Ended(2))));
        assert_eq!(drain(&inbox), (vec![1], true));
        assert_eq!(drain(&inbox), (vec![], false));
    }

    #[test]
    fn ending_an_idle_session_spawns_the_task_that_ends_it() {
        let inbox = Inbox::<u32>::running(8);
        assert_eq!(drain(&inbox), (vec![], false));
        assert!(matches!(inbox.end(), Some(Pushed::SpawnTask)));
        assert_eq!(drain(&inbox), (vec![], true));
    }
}
