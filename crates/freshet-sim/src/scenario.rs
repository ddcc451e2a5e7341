//! The event shapes: seed 004's IoT event exactly, the seed 001 domains
//! (retail point of sale, payment authorisations, logistics scans), and
//! Nexmark's person/auction/bid stream. Each scenario carries something
//! for the hot path to find.

use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

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
            other => return Err(format!("unknown scenario '{other}': iot, retail, payments, logistics or nexmark")),
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

/// ISO-8601 UTC with microseconds, as seed 004's `createdAt`.
pub fn iso8601_micros(time_us: i64) -> String {
    let seconds = time_us.div_euclid(1_000_000);
    let micros = time_us.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
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

/// A random UUID (version 4 layout) from the generator's stream.
pub fn uuid(rng: &mut ChaCha8Rng) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Where a scenario's story is at `elapsed_ms` after the start: anomalies
/// start a minute in (sooner for short runs) and last a few minutes.
fn anomaly_active(elapsed_ms: i64) -> bool {
    (20_000..200_000).contains(&elapsed_ms.rem_euclid(600_000))
}

/// Builds one event: (partition key, JSON value). `sequence` counts
/// events per key (seed 004's deviceSequenceNumber).
pub fn event(
    scenario: Scenario,
    rng: &mut ChaCha8Rng,
    event_id: &str,
    key_index: u64,
    sequence: u64,
    event_time_us: i64,
    elapsed_ms: i64,
) -> (String, Value) {
    let created_at = iso8601_micros(event_time_us);
    let anomaly = anomaly_active(elapsed_ms);
    match scenario {
        Scenario::Iot => {
            let device = format!("contoso://device-id-{key_index}");
            let mut complex = serde_json::Map::new();
            for i in 0..23 {
                complex.insert(format!("moreData{i}"), json!(round2(rng.random_range(0.0..100.0))));
            }
            // Device 0 is a vibration sensor that drifts upwards during the anomaly.
            let drift = if anomaly && key_index == 0 { 40.0 } else { 0.0 };
            let kind = if key_index % 2 == 0 { "TEMP" } else { "CO2" };
            let value = json!({
                "eventId": event_id,
                "complexData": complex,
                "value": round2(rng.random_range(0.0..100.0) + drift),
                "deviceId": device,
                "deviceSequenceNumber": sequence,
                "type": kind,
                "createdAt": created_at,
            });
            (device, value)
        }
        Scenario::Retail => {
            let store = format!("store-{key_index:03}");
            // During the flash sale a few SKUs sell in large quantities.
            let sku_index = if anomaly && rng.random_bool(0.5) { rng.random_range(0..3) } else { rng.random_range(0..500) };
            let qty = if anomaly && sku_index < 3 { rng.random_range(5..20) } else { rng.random_range(1..4) };
            let value = json!({
                "eventId": event_id,
                "StoreId": store,
                "Sku": format!("SKU-{sku_index:05}"),
                "FulfilmentCentre": format!("FC-{}", key_index % 4),
                "Qty": qty,
                "Price": round2(rng.random_range(1.0..200.0)),
                "EventTime": created_at,
            });
            (store, value)
        }
        Scenario::Payments => {
            let bin = format!("{}", 400_000 + key_index);
            // BIN 400000 has its decline rate spike during the anomaly.
            let decline_rate = if anomaly && key_index == 0 { 0.45 } else { 0.05 };
            let result = if rng.random_bool(decline_rate) { "DECLINE" } else { "APPROVE" };
            let value = json!({
                "eventId": event_id,
                "BIN": bin,
                "MerchantId": format!("M{:05}", rng.random_range(0..5_000)),
                "Result": result,
                "Amount": round2(rng.random_range(1.0..500.0)),
                "EventTime": created_at,
            });
            (bin, value)
        }
        Scenario::Logistics => {
            let depot = format!("depot-{key_index:02}");
            // Depot 0's scan-to-dispatch latency crosses its SLA during the anomaly.
            let latency_s = if anomaly && key_index == 0 { rng.random_range(1_800..5_400) } else { rng.random_range(60..900) };
            let scan = ["INDUCT", "SORT", "LOAD", "DISPATCH"][rng.random_range(0..4)];
            let value = json!({
                "eventId": event_id,
                "DepotId": depot,
                "ParcelId": format!("P{:09}", rng.random_range(0..1_000_000_000u64)),
                "ScanType": scan,
                "ScanToDispatchSeconds": latency_s,
                "EventTime": created_at,
            });
            (depot, value)
        }
        Scenario::Nexmark => nexmark(rng, event_id, sequence, &created_at),
    }
}

/// Nexmark's stream: in every 50 events, 1 person, 3 auctions, 46 bids
/// (the standard generator's proportions).
fn nexmark(rng: &mut ChaCha8Rng, event_id: &str, sequence: u64, created_at: &str) -> (String, Value) {
    let slot = sequence % 50;
    let epoch = sequence / 50;
    const CITIES: [&str; 4] = ["Phoenix", "Portland", "Boise", "Seattle"];
    const STATES: [&str; 4] = ["AZ", "OR", "ID", "WA"];
    const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
    if slot == 0 {
        let id = 1_000 + epoch;
        let city = CITIES[rng.random_range(0..4)];
        let state = STATES[rng.random_range(0..4)];
        let value = json!({
            "eventId": event_id, "type": "person",
            "person": {"id": id, "name": format!("person-{id}"), "emailAddress": format!("p{id}@example.com"),
                       "creditCard": format!("{:016}", rng.random_range(0..10_000_000_000_000_000u64)),
                       "city": city, "state": state, "dateTime": created_at, "extra": ""}
        });
        (format!("person-{id}"), value)
    } else if slot <= 3 {
        let id = 1_000 + epoch * 3 + slot - 1;
        let seller = 1_000 + rng.random_range(0..=epoch);
        let value = json!({
            "eventId": event_id, "type": "auction",
            "auction": {"id": id, "itemName": format!("item-{id}"), "description": "", "initialBid": rng.random_range(1..1_000),
                        "reserve": rng.random_range(1_000..2_000), "dateTime": created_at, "expires": created_at,
                        "seller": seller, "category": 10 + rng.random_range(0..5), "extra": ""}
        });
        (format!("auction-{id}"), value)
    } else {
        let auctions = (epoch + 1) * 3;
        let auction = 1_000 + rng.random_range(0..auctions);
        let channel = CHANNELS[rng.random_range(0..4)];
        let value = json!({
            "eventId": event_id, "type": "bid",
            "bid": {"auction": auction, "bidder": 1_000 + rng.random_range(0..=epoch), "price": rng.random_range(100..100_000),
                    "channel": channel,
                    "url": format!("https://example.com/{}", rng.random_range(0..1_000)), "dateTime": created_at, "extra": ""}
        });
        (format!("auction-{auction}"), value)
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn timestamps_are_iso8601_utc_with_microseconds() {
        assert_eq!(iso8601_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601_micros(1_558_026_999_000_003), "2019-05-16T17:16:39.000003Z");
        assert_eq!(iso8601_micros(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(iso8601_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn the_iot_event_has_exactly_seed_004_fields() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (key, value) = event(Scenario::Iot, &mut rng, "id-1", 154, 0, 1_558_026_999_000_003, 0);
        assert_eq!(key, "contoso://device-id-154");
        let object = value.as_object().unwrap();
        let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["complexData", "createdAt", "deviceId", "deviceSequenceNumber", "eventId", "type", "value"]);
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
