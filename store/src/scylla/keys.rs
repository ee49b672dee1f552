//! Partition keys: which day, shard, period or bucket a row belongs to. Writers and readers must
//! agree forever, so these are pure functions with fixed constants, tested against fixed values.

use switchyard_schema::clock::DAY;

/// Shards per day of clicks (and of events). Raising it later is safe (readers visit every
/// shard below the current count, older days simply have empty ones); lowering it is not.
pub const SHARDS: i8 = 16;
/// Partitions of `frust_users`.
pub const USER_BUCKETS: i8 = 16;
/// Seconds of hours per `frust_hours` partition: 8,760 rows each.
pub const HOUR_PERIOD: i64 = 365 * DAY;
/// Microseconds of messages per `chat_messages` partition (10 days, as Discord chose).
pub const CHAT_BUCKET_US: i64 = 10 * DAY * 1_000_000;

/// 64-bit FNV-1a: stable across processes, versions and platforms (unlike std's hasher).
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn to_i32(n: i64) -> i32 {
    // Absurd inputs share the outermost partition instead of wrapping around: order is kept.
    n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The shard of a click or event, from its packet id.
pub fn shard_of(id: &str) -> i8 {
    (fnv1a(id) % SHARDS as u64) as i8
}

pub fn user_bucket(name: &str) -> i8 {
    (fnv1a(name) % USER_BUCKETS as u64) as i8
}

/// The UTC day (days since the Unix epoch) of a Unix timestamp in seconds.
pub fn day_of(timestamp: i64) -> i32 {
    to_i32(timestamp.div_euclid(DAY))
}

pub fn hour_period(hour: i64) -> i32 {
    to_i32(hour.div_euclid(HOUR_PERIOD))
}

pub fn chat_bucket(position: i64) -> i32 {
    to_i32(position.div_euclid(CHAT_BUCKET_US))
}

/// A new message's position in its room: its send time in µs, pushed past the room's last
/// position when that is later (an edge clock behind, or several messages in one ms), so
/// positions grow strictly in persist order.
pub fn next_position(sent_at_ms: i64, last_position: Option<i64>) -> i64 {
    let at = sent_at_ms.saturating_mul(1000);
    match last_position {
        Some(last) => at.max(last.saturating_add(1)),
        None => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shards_and_buckets_are_stable_and_in_range() {
        // Pinned: changing these would orphan every stored row.
        assert_eq!(shard_of("0190f3a4-1b2c-7def-8123-456789abcdef"), 1);
        assert_eq!(user_bucket("alice"), 7);
        let mut used = [0u32; SHARDS as usize];
        for i in 0..1600 {
            let s = shard_of(&format!("0190f3a4-{i:04}-7def-8123-456789abcdef"));
            assert!((0..SHARDS).contains(&s));
            used[s as usize] += 1;
        }
        assert!(
            used.iter().all(|&n| n > 50),
            "ids spread over every shard: {used:?}"
        );
    }

    #[test]
    fn days_split_at_utc_midnight() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY - 1), 0, "23:59:59 is still day 0");
        assert_eq!(day_of(DAY), 1, "00:00:00 starts day 1");
        assert_eq!(day_of(-1), -1, "before the epoch rounds down");
        assert_eq!(day_of(20_000 * DAY + 5), 20_000);
        assert_eq!(day_of(i64::MIN), i32::MIN);
        assert_eq!(day_of(i64::MAX), i32::MAX);
    }

    #[test]
    fn hour_periods_hold_a_year_of_hours() {
        assert_eq!(hour_period(0), 0);
        assert_eq!(hour_period(HOUR_PERIOD - 3600), 0);
        assert_eq!(hour_period(HOUR_PERIOD), 1);
        assert_eq!(hour_period(-3600), -1);
        assert!(
            hour_period(i64::MIN) <= hour_period(-3600),
            "clamped, order kept"
        );
    }

    #[test]
    fn chat_buckets_are_ten_days_of_positions() {
        assert_eq!(chat_bucket(0), 0);
        assert_eq!(chat_bucket(CHAT_BUCKET_US - 1), 0);
        assert_eq!(chat_bucket(CHAT_BUCKET_US), 1);
        let ms = 1_724_250_600_000; // 2024-08-21T14:30:00Z
        assert_eq!(chat_bucket(next_position(ms, None)), 1995);
    }

    #[test]
    fn positions_grow_strictly_in_persist_order() {
        assert_eq!(next_position(5, None), 5000);
        assert_eq!(next_position(5, Some(4000)), 5000, "time moves on");
        assert_eq!(next_position(5, Some(5000)), 5001, "same millisecond");
        assert_eq!(next_position(3, Some(5001)), 5002, "an edge clock behind");
        // A message sent just before a bucket boundary but persisted after one sent on it lands
        // in the later bucket: buckets never go backwards within a room.
        let boundary_ms = CHAT_BUCKET_US / 1000;
        let first = next_position(boundary_ms, None);
        let late = next_position(boundary_ms - 1, Some(first));
        assert!(late > first);
        assert_eq!(chat_bucket(late), chat_bucket(first));
    }
}
