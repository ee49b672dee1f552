//! The contracts every role agrees on: what travels on the bus, what clients send and receive,
//! and how time is bucketed. No I/O lives here.

pub mod backoff;
pub mod chat;
pub mod clock;
pub mod envelope;
pub mod frust;
pub mod id;
pub mod log_throttle;
pub mod subjects;
pub mod token;
pub mod topics;

pub use clock::Clock;
pub use id::new_packet_id;
