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

/// Appends `value` zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    while rest > 0 || digits.len() - at < width.max(1) {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // A few bytes: pushing them one by one beats a call to memmove.
    for &digit in &digits[at..] {
        out.push(digit);
    }
}

/// A random UUID (version 4 layout) from the generator's stream.
pub fn uuid(rng: &mut ChaCha8Rng) -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    Arc::from(std::str::from_utf8(&out).expect("ASCII"))
}

/// Where a scenario's story is at `elapsed_ms` after the start: anomalies
/// start 20 s in and last three minutes, every ten minutes.
fn anomaly_active(elapsed_ms: i64) -> bool {
    (20_000..200_000).contains(&elapsed_ms.rem_euclid(600_000))
}

/// A JSON object written straight into a string: the simulator's events
/// are flat and their strings need no escaping beyond what `string` does,
/// so this is an order of magnitude faster than building a `Value`.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn string(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        out.push(b'"');
        let bytes = value.as_bytes();
        if bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.extend_from_slice(bytes);
            out.push(b'"');
            return self;
        }
        for &byte in bytes {
            match byte {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                byte if byte < 0x20 => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
                byte => out.push(byte),
            }
        }
        out.push(b'"');
        self
    }

    fn time(&mut self, key: &str, time_us: i64) -> &mut Self {
        let out = self.key(key);
        out.push(b'"');
        write_iso8601_micros(out, time_us);
        out.push(b'"');
        self
    }

    /// A string made of `prefix` and `value` zero-padded to `width` digits
    /// (`SKU-00042`), written without formatting machinery.
    fn numbered(&mut self, key: &str, prefix: &str, value: u64, width: usize) -> &mut Self {
        let out = self.key(key);
        out.push(b'"');
        out.extend_from_slice(prefix.as_bytes());
        push_digits(out, value, width);
        out.push(b'"');
        self
    }

    fn integer(&mut self, key: &str, value: u64) -> &mut Self {
        push_digits(self.key(key), value, 1);
        self
    }

    /// A non-negative amount with two decimals, from hundredths.
    fn hundredths(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        push_digits(out, value / 100, 1);
        let cents = (value % 100) as u8;
        out.push(b'.');
        out.push(b'0' + cents / 10);
        out.push(b'0' + cents % 10);
        self
    }

    fn object(&mut self, key: &str) -> Object<'_> {
        Object::new(self.key(key))
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
) -> Option<String> {
    let anomaly = anomaly_active(elapsed_ms);
    let mut event = Object::new(out);
    match scenario {
        Scenario::Iot => {
            event.string("eventId", event_id);
            let mut complex = event.object("complexData");
            for field in MORE_DATA {
                complex.hundredths(field, rng.random_range(0..10_000));
            }
            complex.end();
            // Device 0 is a vibration sensor that drifts upwards during the anomaly.
            let drift = if anomaly && key_index == 0 { 4_000 } else { 0 };
            event.hundredths("value", rng.random_range(0..10_000) + drift);
            event.string("deviceId", key);
            event.integer("deviceSequenceNumber", sequence);
            event.string(
                "type",
                if key_index.is_multiple_of(2) {
                    "TEMP"
                } else {
                    "CO2"
                },
            );
            event.time("createdAt", event_time_us);
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
            event.string("eventId", event_id);
            event.string("StoreId", key);
            event.numbered("Sku", "SKU-", sku, 5);
            event.numbered("FulfilmentCentre", "FC-", key_index % 4, 1);
            event.integer("Qty", qty);
            event.hundredths("Price", rng.random_range(100..20_000));
            event.time("EventTime", event_time_us);
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
            event.string("eventId", event_id);
            event.string("BIN", key);
            event.numbered("MerchantId", "M", rng.random_range(0..5_000), 5);
            event.string("Result", result);
            event.hundredths("Amount", rng.random_range(100..50_000));
            event.time("EventTime", event_time_us);
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
            event.string("eventId", event_id);
            event.string("DepotId", key);
            event.numbered("ParcelId", "P", rng.random_range(0..1_000_000_000u64), 9);
            event.string("ScanType", scan);
            event.integer("ScanToDispatchSeconds", latency_s);
            event.time("EventTime", event_time_us);
            event.end();
            None
        }
        Scenario::Nexmark => Some(nexmark(event, rng, event_id, sequence, event_time_us)),
    }
}

const MORE_DATA: [&str; 23] = [
    "moreData0",
    "moreData1",
    "moreData2",
    "moreData3",
    "moreData4",
    "moreData5",
    "moreData6",
    "moreData7",
    "moreData8",
    "moreData9",
    "moreData10",
    "moreData11",
    "moreData12",
    "moreData13",
    "moreData14",
    "moreData15",
    "moreData16",
    "moreData17",
    "moreData18",
    "moreData19",
    "moreData20",
    "moreData21",
    "moreData22",
];

/// Nexmark's stream: in every 50 events, 1 person, 3 auctions, 46 bids
/// (the standard generator's proportions).
fn nexmark(
    mut event: Object<'_>,
    rng: &mut ChaCha8Rng,
    event_id: &str,
    sequence: u64,
    time_us: i64,
) -> String {
    const CITIES: [&str; 4] = ["Phoenix", "Portland", "Boise", "Seattle"];
    const STATES: [&str; 4] = ["AZ", "OR", "ID", "WA"];
    const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
    let slot = sequence % 50;
    let epoch = sequence / 50;
    event.string("eventId", event_id);
    let key = if slot == 0 {
        let id = 1_000 + epoch;
        event.string("type", "person");
        let mut person = event.object("person");
        person.integer("id", id);
        person.numbered("name", "person-", id, 1);
        person.key("emailAddress").extend_from_slice(b"\"p");
        push_digits(person.out, id, 1);
        person.out.extend_from_slice(b"@example.com\"");
        person.numbered(
            "creditCard",
            "",
            rng.random_range(0..10_000_000_000_000_000u64),
            16,
        );
        person.string("city", CITIES[rng.random_range(0..4)]);
        person.string("state", STATES[rng.random_range(0..4)]);
        person.time("dateTime", time_us);
        person.string("extra", "");
        person.end();
        format!("person-{id}")
    } else if slot <= 3 {
        let id = 1_000 + epoch * 3 + slot - 1;
        event.string("type", "auction");
        let mut auction = event.object("auction");
        auction.integer("id", id);
        auction.numbered("itemName", "item-", id, 1);
        auction.string("description", "");
        auction.integer("initialBid", rng.random_range(1..1_000));
        auction.integer("reserve", rng.random_range(1_000..2_000));
        auction.time("dateTime", time_us);
        auction.time("expires", time_us + 10_000_000);
        auction.integer("seller", 1_000 + rng.random_range(0..=epoch));
        auction.integer("category", 10 + rng.random_range(0..5));
        auction.string("extra", "");
        auction.end();
        format!("auction-{id}")
    } else {
        let auction_id = 1_000 + rng.random_range(0..(epoch + 1) * 3);
        event.string("type", "bid");
        let mut bid = event.object("bid");
        bid.integer("auction", auction_id);
        bid.integer("bidder", 1_000 + rng.random_range(0..=epoch));
        bid.integer("price", rng.random_range(100..100_000));
        bid.string("channel", CHANNELS[rng.random_range(0..4)]);
        bid.numbered("url", "https://example.com/", rng.random_range(0..1_000), 1);
        bid.time("dateTime", time_us);
        bid.string("extra", "");
        bid.end();
        format!("auction-{auction_id}")
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

    #[test]
    fn uuids_have_the_version_4_layout() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let id = uuid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
