//! The event shapes: seed 004's IoT event exactly, the seed 001 domains
//! (retail point of sale, payment authorisations, logistics scans), and
//! Nexmark's person/auction/bid stream. Each scenario carries something
//! for the hot path to find.

use std::sync::Arc;

use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Iot,
    Retail,
    Payments,
    Logistics,
    Nexmark,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        Ok(match name {
            "iot" => Scenario::Iot,
            "retail" => Scenario::Retail,
            "payments" => Scenario::Payments,
            "logistics" => Scenario::Logistics,
            "nexmark" => Scenario::Nexmark,
            other => {
                return Err(format!(
                    "unknown scenario '{other}': iot, retail, payments, logistics or nexmark"
                ));
            }
        })
    }
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Iot => "iot",
            Scenario::Retail => "retail",
            Scenario::Payments => "payments",
            Scenario::Logistics => "logistics",
            Scenario::Nexmark => "nexmark",
        }
    }

    /// The default topic events go to.
    pub fn default_topic(self) -> &'static str {
        match self {
            Scenario::Iot => "iot-events",
            Scenario::Retail => "pos-events",
            Scenario::Payments => "auth-events",
            Scenario::Logistics => "scan-events",
            Scenario::Nexmark => "nexmark-events",
        }
    }
}

/// Writes ISO-8601 UTC with microseconds, as seed 004's `createdAt`.
pub fn write_iso8601_micros(out: &mut Vec<u8>, time_us: i64) {
    thread_local! {
        /// The last second written and its `YYYY-MM-DDTHH:MM:SS`: events
        /// come many to a second, so the calendar arithmetic runs once.
        static LAST_SECOND: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    let seconds = time_us.div_euclid(1_000_000);
    let micros = time_us.rem_euclid(1_000_000);
    let (cached, mut prefix) = LAST_SECOND.get();
    if cached != seconds {
        let mut text = Vec::with_capacity(19);
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        push_digits(&mut text, year as u64, 4);
        text.push(b'-');
        push_digits(&mut text, u64::from(month), 2);
        text.push(b'-');
        push_digits(&mut text, u64::from(day), 2);
        text.push(b'T');
        push_digits(&mut text, (of_day / 3600) as u64, 2);
        text.push(b':');
        push_digits(&mut text, (of_day % 3600 / 60) as u64, 2);
        text.push(b':');
        push_digits(&mut text, (of_day % 60) as u64, 2);
        if text.len() != 19 {
            // Years beyond 9999 are written in full, uncached.
            out.extend_from_slice(&text);
            out.push(b'.');
            push_digits(out, micros as u64, 6);
            out.push(b'Z');
            return;
        }
        prefix.copy_from_slice(&text);
        LAST_SECOND.set((seconds, prefix));
    }
    out.extend_from_slice(&prefix);
    out.push(b'.');
    push_digits(out, micros as u64, 6);
    out.push(b'Z');
}

pub fn iso8601_micros(time_us: i64) -> String {
    let mut out = Vec::with_capacity(27);
    write_iso8601_micros(&mut out, time_us);
    String::from_utf8(out).expect("ASCII")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends the first `len` bytes of `word` (little-endian: its lowest
/// byte first). All eight are stored at once and the tail cut off again:
/// one store, no call to memmove.
#[inline(always)]
fn push_word(out: &mut Vec<u8>, word: u64, len: usize) {
    debug_assert!(len <= 8);
    out.extend_from_slice(&word.to_le_bytes());
    out.truncate(out.len() - (8 - len));
}

/// "00" to "99" as little-endian two-byte words, for two digits a step.
const DIGIT_PAIRS: [u16; 100] = digit_pairs();

const fn digit_pairs() -> [u16; 100] {
    let mut pairs = [0u16; 100];
    let mut at = 0;
    while at < 100 {
        pairs[at] = (b'0' + (at / 10) as u8) as u16 | ((b'0' + (at % 10) as u8) as u16) << 8;
        at += 1;
    }
    pairs
}

/// The eight decimal digits of `value` (below 10⁸) as text in a word,
/// zero-padded: two independent halves, two digits a lookup, no loop.
#[inline(always)]
fn eight_digits_word(value: u64) -> u64 {
    debug_assert!(value < 100_000_000);
    let (high, low) = (value / 10_000, value % 10_000);
    let pair = |n: u64| u64::from(DIGIT_PAIRS[n as usize]);
    pair(high / 100) | pair(high % 100) << 16 | pair(low / 100) << 32 | pair(low % 100) << 48
}

/// Appends `value` zero-padded to at least `width` digits.
#[inline]
fn push_digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let len = (value.checked_ilog10().unwrap_or(0) as usize + 1).max(width);
    if len <= 8 {
        // The leading zeros beyond `len` are shifted out.
        push_word(out, eight_digits_word(value) >> (8 * (8 - len)), len);
    } else if len <= 16 {
        push_digits(out, value / 100_000_000, len - 8);
        push_word(out, eight_digits_word(value % 100_000_000), 8);
    } else {
        push_digits(out, value / 10_000_000_000_000_000, len - 16);
        push_digits(out, value % 10_000_000_000_000_000, 16);
    }
}

/// Hundredths below 10,000 (0.00 to 99.99, seed 004's readings) as text
/// in a word, and its length: no digit loop.
#[inline(always)]
fn small_hundredths_word(value: u64) -> (u64, usize) {
    debug_assert!(value < 10_000);
    let whole = value / 100;
    let cents = u64::from(DIGIT_PAIRS[(value % 100) as usize]);
    let word = u64::from(DIGIT_PAIRS[whole as usize]) | u64::from(b'.') << 16 | cents << 24;
    // Below 10 the pair's leading '0' is shifted out: no branch to mispredict.
    let one_digit = usize::from(whole < 10);
    (word >> (8 * one_digit), 5 - one_digit)
}

/// Appends hundredths as a decimal with two places (`1234` → `12.34`).
#[inline]
fn push_hundredths(out: &mut Vec<u8>, value: u64) {
    if value < 10_000 {
        let (word, len) = small_hundredths_word(value);
        push_word(out, word, len);
        return;
    }
    let whole = value / 100;
    let cents = u64::from(DIGIT_PAIRS[(value % 100) as usize]);
    let whole_len = whole.checked_ilog10().unwrap_or(0) as usize + 1;
    if whole_len > 5 {
        push_digits(out, whole, 1);
        push_word(out, u64::from(b'.') | cents << 8, 3);
        return;
    }
    let shift = 8 * whole_len;
    let digits = eight_digits_word(whole) >> (8 * (8 - whole_len));
    let word = digits | u64::from(b'.') << shift | cents << (shift + 8);
    push_word(out, word, whole_len + 3);
}

/// Seed 004's `complexData` object: 23 readings from 0.00 to 99.99.
/// Written into a stack buffer with whole-word stores (the hottest loop of
/// the IoT scenario), two readings from each 64-bit draw: the high half of
/// a 32-bit draw times 10,000, uniform but for a bias below 3·10⁻⁶.
fn write_readings(out: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    // 23 × (14 name + 5 value) + braces, plus room for the last whole-word stores.
    let mut text = [0u8; 512];
    text[0] = b'{';
    let mut at = 1;
    for pair in MORE_DATA.chunks(2) {
        let bits = rng.next_u64();
        for (half, (name, len)) in pair.iter().enumerate() {
            let draw = (u64::from((bits >> (32 * half)) as u32) * 10_000) >> 32;
            text[at..at + 16].copy_from_slice(name);
            at += len;
            let (word, len) = small_hundredths_word(draw);
            text[at..at + 8].copy_from_slice(&word.to_le_bytes());
            at += len;
        }
    }
    text[at] = b'}';
    out.extend_from_slice(&text[..at + 1]);
}

/// A random UUID (version 4 layout) from the generator's stream.
pub fn uuid(rng: &mut ChaCha8Rng) -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    // Where each byte's two hex digits go, around the dashes at 8, 13, 18, 23.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (byte, at) in bytes.iter().zip(AT) {
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0x0f)];
    }
    Arc::from(std::str::from_utf8(&out).expect("ASCII"))
}

/// Where a scenario's story is at `elapsed_ms` after the start: anomalies
/// start 20 s in and last three minutes, every ten minutes.
fn anomaly_active(elapsed_ms: i64) -> bool {
    (20_000..200_000).contains(&elapsed_ms.rem_euclid(600_000))
}

/// A field name quoted and followed by its colon, as `Object` takes them.
macro_rules! q {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}

/// A JSON object written straight into a byte buffer: the simulator's
/// events are flat and every string in them is generated ASCII with nothing
/// to escape, so this is an order of magnitude faster than building a
/// `Value`. Field names come pre-quoted (`q!`).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    #[inline(always)]
    fn key(&mut self, quoted: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(quoted.as_bytes());
        self.out
    }

    /// `value` must need no escaping (generated ASCII).
    #[inline(always)]
    fn string(&mut self, quoted: &str, value: &str) -> &mut Self {
        debug_assert!(
            value
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
            "{value:?} needs escaping"
        );
        let out = self.key(quoted);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        self
    }

    #[inline(always)]
    fn time(&mut self, quoted: &str, time_us: i64) -> &mut Self {
        let out = self.key(quoted);
        out.push(b'"');
        write_iso8601_micros(out, time_us);
        out.push(b'"');
        self
    }

    /// A string made of `prefix` and `value` zero-padded to `width` digits
    /// (`SKU-00042`), written without formatting machinery.
    #[inline(always)]
    fn numbered(&mut self, quoted: &str, prefix: &str, value: u64, width: usize) -> &mut Self {
        let out = self.key(quoted);
        out.push(b'"');
        out.extend_from_slice(prefix.as_bytes());
        push_digits(out, value, width);
        out.push(b'"');
        self
    }

    #[inline(always)]
    fn integer(&mut self, quoted: &str, value: u64) -> &mut Self {
        push_digits(self.key(quoted), value, 1);
        self
    }

    /// A non-negative amount with two decimals, from hundredths.
    #[inline(always)]
    fn hundredths(&mut self, quoted: &str, value: u64) -> &mut Self {
        push_hundredths(self.key(quoted), value);
        self
    }

    fn object(&mut self, quoted: &str) -> Object<'_> {
        Object::new(self.key(quoted))
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// Writes one event as JSON into `out`; returns its partition key.
/// `sequence` counts events per key (seed 004's deviceSequenceNumber), or
/// the whole stream for Nexmark.
#[allow(clippy::too_many_arguments)]
/// The partition key of key number `key_index` (devices, stores, BINs,
/// depots). Nexmark events carry their own keys.
pub fn partition_key(scenario: Scenario, key_index: u64) -> String {
    match scenario {
        Scenario::Iot => format!("contoso://device-id-{key_index}"),
        Scenario::Retail => format!("store-{key_index:03}"),
        Scenario::Payments => (400_000 + key_index).to_string(),
        Scenario::Logistics => format!("depot-{key_index:02}"),
        Scenario::Nexmark => String::new(),
    }
}

/// Writes one event as JSON into `out`. `key` is `partition_key` of
/// `key_index`. Returns Nexmark's own key; `None` for the seed scenarios.
/// `sequence` counts events per key (seed 004's deviceSequenceNumber), or
/// the whole stream for Nexmark.
#[allow(clippy::too_many_arguments)]
pub fn write_event(
    out: &mut Vec<u8>,
    scenario: Scenario,
    rng: &mut ChaCha8Rng,
    event_id: &str,
    key: &str,
    key_index: u64,
    sequence: u64,
    event_time_us: i64,
    elapsed_ms: i64,
) -> Option<Arc<str>> {
    let anomaly = anomaly_active(elapsed_ms);
    let mut event = Object::new(out);
    match scenario {
        Scenario::Iot => {
            event.string(q!("eventId"), event_id);
            write_readings(event.key(q!("complexData")), rng);
            // Device 0 is a vibration sensor that drifts upwards during the anomaly.
            let drift = if anomaly && key_index == 0 { 4_000 } else { 0 };
            event.hundredths(q!("value"), rng.random_range(0..10_000) + drift);
            event.string(q!("deviceId"), key);
            event.integer(q!("deviceSequenceNumber"), sequence);
            event.string(
                q!("type"),
                if key_index.is_multiple_of(2) {
                    "TEMP"
                } else {
                    "CO2"
                },
            );
            event.time(q!("createdAt"), event_time_us);
            event.end();
            None
        }
        Scenario::Retail => {
            // During the flash sale a few SKUs sell in large quantities.
            let sku = if anomaly && rng.random_bool(0.5) {
                rng.random_range(0..3)
            } else {
                rng.random_range(0..500)
            };
            let qty = if anomaly && sku < 3 {
                rng.random_range(5..20)
            } else {
                rng.random_range(1..4)
            };
            event.string(q!("eventId"), event_id);
            event.string(q!("StoreId"), key);
            event.numbered(q!("Sku"), "SKU-", sku, 5);
            event.numbered(q!("FulfilmentCentre"), "FC-", key_index % 4, 1);
            event.integer(q!("Qty"), qty);
            event.hundredths(q!("Price"), rng.random_range(100..20_000));
            event.time(q!("EventTime"), event_time_us);
            event.end();
            None
        }
        Scenario::Payments => {
            // BIN 400000 has its decline rate spike during the anomaly.
            let decline_rate = if anomaly && key_index == 0 {
                0.45
            } else {
                0.05
            };
            let result = if rng.random_bool(decline_rate) {
                "DECLINE"
            } else {
                "APPROVE"
            };
            event.string(q!("eventId"), event_id);
            event.string(q!("BIN"), key);
            event.numbered(q!("MerchantId"), "M", rng.random_range(0..5_000), 5);
            event.string(q!("Result"), result);
            event.hundredths(q!("Amount"), rng.random_range(100..50_000));
            event.time(q!("EventTime"), event_time_us);
            event.end();
            None
        }
        Scenario::Logistics => {
            // Depot 0's scan-to-dispatch latency crosses its SLA during the anomaly.
            let latency_s = if anomaly && key_index == 0 {
                rng.random_range(1_800..5_400)
            } else {
                rng.random_range(60..900)
            };
            let scan = ["INDUCT", "SORT", "LOAD", "DISPATCH"][rng.random_range(0..4)];
            event.string(q!("eventId"), event_id);
            event.string(q!("DepotId"), key);
            event.numbered(
                q!("ParcelId"),
                "P",
                rng.random_range(0..1_000_000_000u64),
                9,
            );
            event.string(q!("ScanType"), scan);
            event.integer(q!("ScanToDispatchSeconds"), latency_s);
            event.time(q!("EventTime"), event_time_us);
            event.end();
            None
        }
        Scenario::Nexmark => Some(nexmark(event, rng, event_id, sequence, event_time_us)),
    }
}

/// Seed 004's `complexData` field names, each quoted with its colon (and
/// the comma before it after the first), padded to 16 bytes.
const MORE_DATA: [([u8; 16], usize); 23] = more_data_names();

const fn more_data_names() -> [([u8; 16], usize); 23] {
    let mut names = [([0u8; 16], 0usize); 23];
    let mut index = 0;
    while index < names.len() {
        let (text, len) = &mut names[index];
        if index > 0 {
            text[*len] = b',';
            *len += 1;
        }
        text[*len] = b'"';
        *len += 1;
        let stem = b"moreData";
        let mut at = 0;
        while at < stem.len() {
            text[*len] = stem[at];
            *len += 1;
            at += 1;
        }
        if index >= 10 {
            text[*len] = b'0' + (index / 10) as u8;
            *len += 1;
        }
        text[*len] = b'0' + (index % 10) as u8;
        text[*len + 1] = b'"';
        text[*len + 2] = b':';
        *len += 3;
        index += 1;
    }
    names
}

/// `prefix` followed by `id`, as a shared key (one allocation).
fn numbered_key(prefix: &'static str, id: u64) -> Arc<str> {
    let mut text = [0u8; 48];
    text[..prefix.len()].copy_from_slice(prefix.as_bytes());
    let len = prefix.len() + id.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut rest = id;
    for digit in text[prefix.len()..len].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    Arc::from(std::str::from_utf8(&text[..len]).expect("ASCII"))
}

/// Nexmark's stream: in every 50 events, 1 person, 3 auctions, 46 bids
/// (the standard generator's proportions).
fn nexmark(
    mut event: Object<'_>,
    rng: &mut ChaCha8Rng,
    event_id: &str,
    sequence: u64,
    time_us: i64,
) -> Arc<str> {
    const CITIES: [&str; 4] = ["Phoenix", "Portland", "Boise", "Seattle"];
    const STATES: [&str; 4] = ["AZ", "OR", "ID", "WA"];
    const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
    let slot = sequence % 50;
    let epoch = sequence / 50;
    event.string(q!("eventId"), event_id);
    let key = if slot == 0 {
        let id = 1_000 + epoch;
        event.string(q!("type"), "person");
        let mut person = event.object(q!("person"));
        person.integer(q!("id"), id);
        person.numbered(q!("name"), "person-", id, 1);
        person.key(q!("emailAddress")).extend_from_slice(b"\"p");
        push_digits(person.out, id, 1);
        person.out.extend_from_slice(b"@example.com\"");
        person.numbered(
            q!("creditCard"),
            "",
            rng.random_range(0..10_000_000_000_000_000u64),
            16,
        );
        person.string(q!("city"), CITIES[rng.random_range(0..4)]);
        person.string(q!("state"), STATES[rng.random_range(0..4)]);
        person.time(q!("dateTime"), time_us);
        person.string(q!("extra"), "");
        person.end();
        numbered_key("person-", id)
    } else if slot <= 3 {
        let id = 1_000 + epoch * 3 + slot - 1;
        event.string(q!("type"), "auction");
        let mut auction = event.object(q!("auction"));
        auction.integer(q!("id"), id);
        auction.numbered(q!("itemName"), "item-", id, 1);
        auction.string(q!("description"), "");
        auction.integer(q!("initialBid"), rng.random_range(1..1_000));
        auction.integer(q!("reserve"), rng.random_range(1_000..2_000));
        auction.time(q!("dateTime"), time_us);
        auction.time(q!("expires"), time_us + 10_000_000);
        auction.integer(q!("seller"), 1_000 + rng.random_range(0..=epoch));
        auction.integer(q!("category"), 10 + rng.random_range(0..5));
        auction.string(q!("extra"), "");
        auction.end();
        numbered_key("auction-", id)
    } else {
        let auction_id = 1_000 + rng.random_range(0..(epoch + 1) * 3);
        event.string(q!("type"), "bid");
        let mut bid = event.object(q!("bid"));
        bid.integer(q!("auction"), auction_id);
        bid.integer(q!("bidder"), 1_000 + rng.random_range(0..=epoch));
        bid.integer(q!("price"), rng.random_range(100..100_000));
        bid.string(q!("channel"), CHANNELS[rng.random_range(0..4)]);
        bid.numbered(
            q!("url"),
            "https://example.com/",
            rng.random_range(0..1_000),
            1,
        );
        bid.time(q!("dateTime"), time_us);
        bid.string(q!("extra"), "");
        bid.end();
        numbered_key("auction-", auction_id)
    };
    event.end();
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn timestamps_are_iso8601_utc_with_microseconds() {
        assert_eq!(iso8601_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            iso8601_micros(1_558_026_999_000_003),
            "2019-05-16T17:16:39.000003Z"
        );
        assert_eq!(
            iso8601_micros(951_782_400_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(iso8601_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn the_iot_event_has_exactly_seed_004_fields() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        let key = partition_key(Scenario::Iot, 154);
        let own = write_event(
            &mut out,
            Scenario::Iot,
            &mut rng,
            "id-1",
            &key,
            154,
            0,
            1_558_026_999_000_003,
            0,
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(key, "contoso://device-id-154");
        assert_eq!(own, None);
        assert_eq!(value["deviceId"], "contoso://device-id-154");
        let object = value.as_object().unwrap();
        let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "complexData",
                "createdAt",
                "deviceId",
                "deviceSequenceNumber",
                "eventId",
                "type",
                "value"
            ]
        );
        assert_eq!(object["complexData"].as_object().unwrap().len(), 23);
        assert!(object["complexData"]["moreData22"].is_f64());
        assert_eq!(object["createdAt"], "2019-05-16T17:16:39.000003Z");
    }

    proptest::proptest! {
        #[test]
        fn numbers_are_written_as_format_writes_them(value: u64, width in 0usize..24) {
            let mut out = b"x".to_vec();
            push_digits(&mut out, value, width);
            proptest::prop_assert_eq!(out, format!("x{value:0width$}").into_bytes());
            let mut out = b"x".to_vec();
            push_hundredths(&mut out, value);
            proptest::prop_assert_eq!(
                out,
                format!("x{}.{:02}", value / 100, value % 100).into_bytes()
            );
        }
    }

    #[test]
    fn number_edges_are_written_in_full() {
        for (value, width, text) in [
            (0, 0, "0"),
            (0, 3, "000"),
            (99_999_999, 1, "99999999"),
            (100_000_000, 1, "100000000"),
            (42, 16, "0000000000000042"),
            (u64::MAX, 1, "18446744073709551615"),
        ] {
            let mut out = Vec::new();
            push_digits(&mut out, value, width);
            assert_eq!(out, text.as_bytes());
        }
        for value in 0..20_000u64 {
            let mut out = Vec::new();
            push_hundredths(&mut out, value);
            assert_eq!(
                out,
                format!("{}.{:02}", value / 100, value % 100).into_bytes()
            );
        }
        for (value, text) in [
            (0, "0.00"),
            (5, "0.05"),
            (10_000, "100.00"),
            (9_999_999, "99999.99"),
        ] {
            let mut out = Vec::new();
            push_hundredths(&mut out, value);
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn uuids_have_the_version_4_layout() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let id = uuid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
