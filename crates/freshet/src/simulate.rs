//! `freshet simulate` and `freshet verify`: the seed 004 event generator
//! wired to its sinks (a Kafka-protocol broker, a JSON-lines file or
//! standard output, or nothing, to measure generation), with rate control,
//! a progress bar and a manifest; and the check of a topic against that
//! manifest.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use freshet_sim::manifest::Observed;
use freshet_sim::{Generated, Generator, Injection, Manifest, Options, Scenario};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// iot (seed 004's event), retail, payments, logistics or nexmark.
    #[arg(long, default_value = "iot")]
    scenario: Scenario,
    /// Events per second; 0 sends as fast as the sink takes them.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// How long to send, e.g. 60s, 5m (default: until --count, else 60s).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How many events to send (duplicates and malformed ones included).
    #[arg(long)]
    count: Option<u64>,
    /// Topic to produce to (default: the scenario's, e.g. auth-events for payments).
    #[arg(long)]
    topic: Option<String>,
    /// Kafka bootstrap servers: Freshet's Kafka listener or any Kafka-protocol broker.
    #[arg(
        long,
        short = 'b',
        env = "FRESHET_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Write JSON lines to this file ('-' for standard output) instead of a broker.
    #[arg(long, conflicts_with = "null")]
    output: Option<PathBuf>,
    /// Generate but send nowhere (to measure the generator).
    #[arg(long)]
    null: bool,
    /// Send over HTTP to this Freshet server (`POST /api/v1/topics/{topic}/events`,
    /// 500 events a request) instead of Kafka, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with_all = ["null", "output"])]
    http: Option<String>,
    /// Devices, stores, BINs or depots.
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// Seed of the generator: the same seed and --start give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Event time of the first event: 'now' or milliseconds since the epoch.
    #[arg(long, default_value = "now")]
    start: String,
    /// Fraction of events that repeat an earlier event byte for byte.
    #[arg(long, default_value_t = 0.001)]
    duplicates: f64,
    /// Fraction of events whose event time is --late-by in the past.
    #[arg(long, default_value_t = 0.0)]
    late: f64,
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    late_by: Duration,
    /// Fraction of events whose event time is moved back by up to --disorder.
    #[arg(long, default_value_t = 0.0)]
    out_of_order: f64,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    disorder: Duration,
    /// Fraction of events that are not valid JSON.
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    /// Producer acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "lz4")]
    compression: String,
    /// Where to write the manifest of what was sent.
    #[arg(long, default_value = "freshet-manifest.json")]
    manifest: PathBuf,
    /// Show a progress bar on a terminal.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, hide = true)]
    progress: bool,
    /// Set to stop sending early (used by `freshet demo`).
    #[arg(skip)]
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest `freshet simulate` wrote.
    #[arg(long, default_value = "freshet-manifest.json")]
    manifest: PathBuf,
    /// Topic to check (default: the manifest's).
    #[arg(long)]
    topic: Option<String>,
    #[arg(
        long,
        short = 'b',
        env = "FRESHET_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Give up reading after this long.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Start before (or while) `freshet simulate` runs: read the topic live,
    /// measure each event's latency from send to read, and check once the
    /// simulator has written its manifest.
    #[arg(long, conflicts_with = "table")]
    follow: bool,
    /// Check a store table (through the query API of --server) instead of
    /// a topic: once ingestion has caught up, every unique event must be
    /// there once if the table dedups on --id-column, else as often as sent.
    #[arg(long, conflicts_with = "topic")]
    table: Option<String>,
    /// The server's HTTP address, for --table.
    #[arg(long, env = "FRESHET_HTTP", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The table column holding the simulator's event id.
    #[arg(long, default_value = "eventId")]
    id_column: String,
}

/// One simulator of `freshet demo`.
pub struct DemoFeed {
    pub scenario: &'static str,
    pub topic: &'static str,
    /// Events per second.
    pub rate: u32,
    pub keys: u32,
}

/// Feeds `freshet demo`: one scenario into its topic, on its own thread.
/// The returned function stops it and waits until everything sent is
/// acknowledged.
pub fn spawn_demo_feed(
    feed: &DemoFeed,
    bootstrap: String,
    manifest: PathBuf,
) -> impl FnOnce() + Send {
    #[derive(clap::Parser)]
    struct Feed {
        #[command(flatten)]
        args: SimulateArgs,
    }
    let (rate, keys) = (feed.rate.to_string(), feed.keys.to_string());
    let argv = [
        "simulate",
        "--scenario",
        feed.scenario,
        "--topic",
        feed.topic,
        "--rate",
        &rate,
        "--duration",
        "24h",
        "--keys",
        &keys,
        "--bootstrap",
        &bootstrap,
        "--manifest",
        manifest.to_str().unwrap_or("demo-manifest.json"),
    ];
    let name = format!("demo-feed-{}", feed.scenario);
    let feed = <Feed as clap::Parser>::parse_from(argv);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let args = SimulateArgs {
        progress: false,
        stop: Some(Arc::clone(&stop)),
        ..feed.args
    };
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the feed");
            if let Err(error) = runtime.block_on(simulate(args)) {
                tracing::error!(%error, "the demo feed stopped");
            }
        })
        .expect("spawn the demo feed");
    move || {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = thread.join();
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 500ms, 30s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => value / 1_000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3_600.0,
        _ => return Err(format!("'{text}': unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the delivery callback needs of an event to count it.
struct Sent {
    event: Generated,
}

/// Counts acknowledged events into the manifest as the broker confirms them.
struct Delivery {
    manifest: Arc<Mutex<Manifest>>,
    errors: Arc<std::sync::atomic::AtomicU64>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self
                .manifest
                .lock()
                .expect("manifest lock")
                .record(&sent.event, now_ms()),
            Err((error, _)) => {
                self.errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%error, "an event was not delivered");
            }
        }
    }
}

enum Sink {
    Null,
    Lines(Box<dyn Write>),
    Kafka {
        producer: ThreadedProducer<Delivery>,
        topic: String,
    },
    Http(HttpSink),
}

/// Events posted as JSON lines, a request per `HTTP_BATCH` events; an
/// event is counted once its request succeeded. Malformed events go alone,
/// and the endpoint refusing them is the expected answer.
struct HttpSink {
    agent: ureq::Agent,
    url: String,
    body: Vec<u8>,
    batch: Vec<Generated>,
}

const HTTP_BATCH: usize = 500;

impl HttpSink {
    fn send(
        &mut self,
        event: Generated,
        manifest: &mut Manifest,
        errors: &std::sync::atomic::AtomicU64,
    ) -> anyhow::Result<()> {
        if event.injection == Injection::Malformed {
            let response = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/x-ndjson")
                .send(&event.payload[..]);
            match response {
                Ok(r) if r.status().as_u16() == 400 => manifest.record(&event, now_ms()),
                Ok(r) => bail!(
                    "the server took a malformed event with status {}",
                    r.status()
                ),
                Err(error) => bail!("posting to {}: {error}", self.url),
            }
            return Ok(());
        }
        self.body.extend_from_slice(&event.payload);
        self.body.push(b'\n');
        self.batch.push(event);
        if self.batch.len() >= HTTP_BATCH {
            self.flush(manifest, errors)?;
        }
        Ok(())
    }

    fn flush(
        &mut self,
        manifest: &mut Manifest,
        errors: &std::sync::atomic::AtomicU64,
    ) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-ndjson")
            .send(&self.body[..]);
        match response {
            Ok(r) if r.status().is_success() => {
                let now = now_ms();
                for event in &self.batch {
                    manifest.record(event, now);
                }
            }
            Ok(mut r) => {
                let reason = r.body_mut().read_to_string().unwrap_or_default();
                errors.fetch_add(
                    self.batch.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::warn!(status = %r.status(), %reason, "the server refused a batch of events");
            }
            Err(error) => bail!("posting to {}: {error}", self.url),
        }
        self.body.clear();
        self.batch.clear();
        Ok(())
    }
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let start_us = match args.start.as_str() {
        "now" => now_ms() * 1_000,
        text => {
            text.parse::<i64>()
                .context("--start: 'now' or milliseconds since the epoch")?
                * 1_000
        }
    };
    let options = Options {
        scenario: args.scenario,
        seed: args.seed,
        keys: args.keys,
        rate_per_s: args.rate,
        start_us,
        duplicates: args.duplicates,
        late: args.late,
        late_by_ms: args.late_by.as_millis() as i64,
        out_of_order: args.out_of_order,
        disorder_ms: args.disorder.as_millis() as i64,
        malformed: args.malformed,
    };
    options.validate().map_err(anyhow::Error::msg)?;
    let count = args.count.unwrap_or(u64::MAX);
    let duration = args.duration.or(if args.count.is_none() {
        Some(Duration::from_secs(60))
    } else {
        None
    });
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| args.scenario.default_topic().to_string());
    let destination = match (&args.output, args.null, &args.http) {
        (_, true, _) => "null".to_string(),
        (Some(path), _, _) => path.display().to_string(),
        (None, _, Some(http)) => format!(
            "{}/api/v1/topics/{topic}/events",
            http.trim_end_matches('/')
        ),
        (None, _, None) => format!("kafka://{}/{topic}", args.bootstrap),
    };
    let manifest = Arc::new(Mutex::new(Manifest::new(
        args.scenario.name(),
        args.seed,
        &destination,
        now_ms(),
    )));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut sink = if args.null {
        Sink::Null
    } else if args.http.is_some() {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Sink::Http(HttpSink {
            agent,
            url: destination.clone(),
            body: Vec::new(),
            batch: Vec::new(),
        })
    } else if let Some(path) = &args.output {
        let writer: Box<dyn Write> = if path.as_os_str() == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout()))
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ))
        };
        Sink::Lines(writer)
    } else {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &args.bootstrap)
            .set("acks", &args.acks)
            .set(
                "enable.idempotence",
                if args.acks == "all" { "true" } else { "false" },
            )
            .set("compression.type", &args.compression)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .set("log_level", "3")
            .create_with_context(Delivery {
                manifest: Arc::clone(&manifest),
                errors: Arc::clone(&errors),
            })
            .context("creating the Kafka producer")?;
        Sink::Kafka {
            producer,
            topic: topic.clone(),
        }
    };

    let progress = if args.progress {
        ProgressBar::new(if count == u64::MAX { 0 } else { count })
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} sent {pos} ({per_sec}) {msg}")
            .expect("valid template"),
    );
    let mut generator = Generator::new(options);
    let started = Instant::now();
    let mut sent = 0u64;
    // Null and file sinks count as delivered at once.
    let mut local = Manifest::new(args.scenario.name(), args.seed, &destination, now_ms());
    let stopped = || {
        args.stop
            .as_ref()
            .is_some_and(|stop| stop.load(std::sync::atomic::Ordering::Relaxed))
    };
    while sent < count && duration.is_none_or(|d| started.elapsed() < d) && !stopped() {
        if args.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed())
                && ahead > Duration::from_millis(1)
            {
                std::thread::sleep(ahead);
            }
        }
        let event = generator.next_event();
        match &mut sink {
            Sink::Null => {
                std::hint::black_box(&event);
                local.record(&event, 0);
            }
            Sink::Lines(writer) => {
                writer.write_all(&event.payload)?;
                writer.write_all(b"\n")?;
                local.record(&event, now_ms());
            }
            Sink::Http(http) => http.send(event, &mut local, &errors)?,
            Sink::Kafka { producer, topic } => {
                // librdkafka copies key and payload; the delivery callback
                // gets the event's identity back to count it.
                let Generated {
                    key,
                    payload,
                    event_id,
                    event_time_us,
                    injection,
                } = event;
                let identity = Generated {
                    key: key.clone(),
                    payload: Default::default(),
                    event_id,
                    event_time_us,
                    injection,
                };
                let mut opaque = Box::new(Sent { event: identity });
                loop {
                    let record = BaseRecord::with_opaque_to(topic, opaque)
                        .payload(&payload[..])
                        .key(key.as_bytes());
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((error, returned)) => {
                            if error.rdkafka_error_code()
                                != Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            {
                                bail!("producing: {error}");
                            }
                            opaque = returned.delivery_opaque;
                            producer.poll(Duration::from_millis(1));
                        }
                    }
                }
            }
        }
        sent += 1;
        if sent.is_multiple_of(1_024) {
            progress.set_position(sent);
            progress.set_message(format!(
                "errors {}",
                errors.load(std::sync::atomic::Ordering::Relaxed)
            ));
        }
    }
    let manifest = match sink {
        Sink::Kafka { producer, .. } => {
            producer
                .flush(Duration::from_secs(60))
                .context("waiting for the broker to acknowledge everything")?;
            drop(producer);
            Arc::try_unwrap(manifest)
                .map_err(|_| anyhow::anyhow!("manifest still shared"))?
                .into_inner()
                .expect("manifest lock")
        }
        Sink::Lines(mut writer) => {
            writer.flush()?;
            local.send_finished_ms = now_ms();
            local
        }
        Sink::Http(mut http) => {
            http.flush(&mut local, &errors)?;
            local.send_finished_ms = now_ms();
            local
        }
        Sink::Null => {
            local.send_finished_ms = now_ms();
            local
        }
    };
    progress.finish_and_clear();
    let mut manifest = manifest;
    manifest.send_errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    std::fs::write(&args.manifest, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", args.manifest.display()))?;
    eprintln!(
        "sent {} events to {destination} in {elapsed:.1}s ({:.0}/s): {} unique, {} duplicates, {} late, {} out of order, {} malformed, {} errors; manifest {}",
        manifest.sent,
        manifest.sent as f64 / elapsed.max(1e-9),
        manifest.unique,
        manifest.duplicates,
        manifest.late,
        manifest.out_of_order,
        manifest.malformed,
        manifest.send_errors,
        args.manifest.display()
    );
    if manifest.send_errors > 0 {
        bail!("{} events were not delivered", manifest.send_errors);
    }
    Ok(())
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_ms = now_ms();
    let read_manifest = |path: &PathBuf| -> anyhow::Result<Manifest> {
        serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| {
            format!(
                "{} is not a manifest written by freshet simulate",
                path.display()
            )
        })
    };
    let fresh_manifest = |path: &PathBuf| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                modified >= std::time::UNIX_EPOCH + Duration::from_millis(started_ms.max(0) as u64)
            })
    };
    let mut manifest = if args.follow {
        None
    } else {
        Some(read_manifest(&args.manifest)?)
    };
    if let (Some(table), Some(manifest)) = (&args.table, &manifest) {
        let (server, id_column, timeout) =
            (args.server.clone(), args.id_column.clone(), args.timeout);
        let (table, manifest) = (table.clone(), manifest.clone());
        return tokio::task::spawn_blocking(move || {
            verify_table(&server, &table, &id_column, &manifest, timeout)
        })
        .await?;
    }
    let topic = match (&args.topic, &manifest) {
        (Some(topic), _) => topic.clone(),
        (None, Some(manifest)) => manifest_topic(manifest)?,
        (None, None) => {
            bail!("--follow needs --topic (the manifest is written only when the simulator ends)")
        }
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "freshet-verify")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "3")
        .create()
        .context("creating the Kafka consumer")?;
    let partitions = wait_for_partitions(&consumer, &topic, args.follow, args.timeout)?;
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut observed = Observed::default();
    let mut records = 0u64;
    let mut positions: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    let mut latencies_ms: Vec<i64> = Vec::new();
    // The partition ends to read up to, fixed once the manifest is known.
    let mut ends: Option<std::collections::HashMap<i32, i64>> = None;
    loop {
        if started.elapsed() > args.timeout {
            bail!(
                "gave up after {:?}: the topic was not read to its end",
                args.timeout
            );
        }
        if manifest.is_none() && fresh_manifest(&args.manifest) {
            manifest = Some(read_manifest(&args.manifest)?);
        }
        if manifest.is_some() && ends.is_none() {
            let mut marks = std::collections::HashMap::new();
            for &partition in &partitions {
                let (_, high) =
                    consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
                marks.insert(partition, high);
            }
            ends = Some(marks);
        }
        if let Some(ends) = &ends
            && ends
                .iter()
                .all(|(partition, end)| positions.get(partition).copied().unwrap_or(0) >= *end)
        {
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.context("reading the topic")?;
        let read_ms = now_ms();
        positions.insert(message.partition(), message.offset() + 1);
        if let Some(ends) = &ends
            && message.offset() >= ends.get(&message.partition()).copied().unwrap_or(0)
        {
            continue; // appended after the simulator finished
        }
        records += 1;
        observed.add(message.payload().unwrap_or_default());
        // Latency only for events sent while we were watching.
        if let Some(sent_ms) = message.timestamp().to_millis()
            && args.follow
            && sent_ms >= started_ms
        {
            latencies_ms.push(read_ms - sent_ms);
        }
    }
    let manifest = manifest.expect("the loop ends only with a manifest");
    let read_seconds = started.elapsed().as_secs_f64();
    println!(
        "topic {topic}: {records} records read in {read_seconds:.1}s ({:.0}/s)",
        records as f64 / read_seconds.max(1e-9)
    );
    let latency = if latencies_ms.is_empty() {
        "latency from send to read: not measured (run with --follow while the simulator sends)"
            .to_string()
    } else {
        format!(
            "latency from send to read over {}",
            percentiles(&mut latencies_ms)
        )
    };
    report(&manifest, &manifest.verify(&observed, false), &latency)
}

/// `p50 … max` of `samples` (sorted here), in milliseconds.
fn percentiles(samples: &mut [i64]) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "{} events: p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        samples.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    )
}

/// Prints the verdict; an error when anything was lost, duplicated or changed.
fn report(
    manifest: &Manifest,
    verdict: &freshet_sim::manifest::Verification,
    latency: &str,
) -> anyhow::Result<()> {
    println!(
        "  sent unique {} / present unique {} / missing {} / unexpected {}",
        verdict.sent_unique, verdict.present_unique, verdict.missing, verdict.unexpected
    );
    println!(
        "  duplicates injected {} / present {} / beyond those allowed {}",
        verdict.duplicates_injected, verdict.duplicates_present, verdict.excess_duplicates
    );
    println!(
        "  malformed sent {} / present {}",
        verdict.malformed_sent, verdict.malformed_present
    );
    println!(
        "  simulator rate {:.0} events/s over {:.1}s",
        manifest.rate_per_s(),
        (manifest.send_finished_ms - manifest.send_started_ms) as f64 / 1e3
    );
    println!("  {latency}");
    println!(
        "  same set of event ids as sent: {}",
        if verdict.same_set { "yes" } else { "NO" }
    );
    if !verdict.ok {
        bail!("verification failed: events were lost, duplicated or changed");
    }
    println!("OK");
    Ok(())
}

/// Rows of one id-column page the table check asks for at a time.
const ID_PAGE_ROWS: usize = 100_000;

/// `freshet verify --table`: the store's side of the round trip.
fn verify_table(
    server: &str,
    table: &str,
    id_column: &str,
    manifest: &Manifest,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let http = StoreClient::new(server);
    let tables = http.get("/api/v1/tables")?;
    let Some(info) = tables["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == table)
        .cloned()
    else {
        bail!("the server has no table '{table}'");
    };
    let dedup_promised = info["dedup"].as_str() == Some(id_column);
    let (quoted_table, id) = (quote_identifier(table), quote_identifier(id_column));
    // Caught up: nothing left to ingest and the row count has settled.
    let mut settled = 0;
    let mut last_rows = -1;
    loop {
        let lag = http.get("/api/v1/tables")?["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == table)
            .and_then(|t| t["lag"].as_i64())
            .unwrap_or(0);
        let rows = http.query(&format!("SELECT count(*) AS n FROM {quoted_table}"))?[0][0]
            .as_i64()
            .unwrap_or(0);
        settled = if lag == 0 && rows == last_rows {
            settled + 1
        } else {
            0
        };
        last_rows = rows;
        if settled >= 2 || started.elapsed() > timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut observed = Observed::default();
    let mut after: Option<String> = None;
    loop {
        let filter = after
            .as_deref()
            .map(|last| format!("WHERE {id} > {} ", quote_literal(last)))
            .unwrap_or_default();
        let page = http.query(&format!(
            "SELECT {id}, count(*) FROM {quoted_table} {filter}GROUP BY {id} ORDER BY {id} LIMIT {ID_PAGE_ROWS}"
        ))?;
        for row in &page {
            let (Some(event_id), Some(copies)) = (row[0].as_str(), row[1].as_u64()) else {
                continue;
            };
            observed.ids.insert(event_id.to_string(), copies as u32);
        }
        after = page
            .last()
            .and_then(|row| row[0].as_str())
            .map(String::from);
        if page.len() < ID_PAGE_ROWS {
            break;
        }
    }
    // Send-to-queryable latency of the manifest's sampled events.
    let mut latencies_ms = Vec::new();
    for chunk in manifest.send_samples.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(|s| quote_literal(&s.event_id)).collect();
        let rows = http.query(&format!(
            "SELECT {id}, CAST(min(_ingestion_time) AS BIGINT) FROM {quoted_table} WHERE {id} IN ({}) GROUP BY {id}",
            ids.join(", ")
        ))?;
        let ingested: std::collections::HashMap<&str, i64> = rows
            .iter()
            .filter_map(|row| Some((row[0].as_str()?, row[1].as_i64()?)))
            .collect();
        latencies_ms.extend(
            chunk.iter().filter_map(|sample| {
                Some(ingested.get(sample.event_id.as_str())? - sample.sent_ms)
            }),
        );
    }
    let span = &http.query(&format!(
        "SELECT count(*), CAST(min(_ingestion_time) AS BIGINT), CAST(max(_ingestion_time) AS BIGINT) FROM {quoted_table}"
    ))?[0];
    let (rows, first, last) = (
        span[0].as_i64().unwrap_or(0),
        span[1].as_i64().unwrap_or(0),
        span[2].as_i64().unwrap_or(0),
    );
    println!(
        "table {table}: {rows} rows, ingested at {:.0} rows/s; dedup on {id_column}: {}; dead letters {}",
        rows as f64 / ((last - first).max(1) as f64 / 1e3),
        if dedup_promised { "yes" } else { "no" },
        info["dead_letters"].as_u64().unwrap_or(0),
    );
    let latency = if latencies_ms.is_empty() {
        "latency from send to queryable: no sampled event found".to_string()
    } else {
        format!(
            "latency from send to queryable (ingestion time) over {}",
            percentiles(&mut latencies_ms)
        )
    };
    report(
        manifest,
        &manifest.verify(&observed, dedup_promised),
        &latency,
    )
}

/// The store's query API, as `verify --table` uses it.
struct StoreClient {
    agent: ureq::Agent,
    server: String,
}

impl StoreClient {
    fn new(server: &str) -> Self {
        Self {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
            server: server.trim_end_matches('/').to_string(),
        }
    }

    fn answer(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let status = response.status();
        let body: serde_json::Value = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_json()
            .with_context(|| format!("reading the answer to {what}"))?;
        if !status.is_success() {
            bail!(
                "{what} failed ({status}): {}",
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given")
            );
        }
        Ok(body)
    }

    fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .agent
            .get(&format!("{}{path}", self.server))
            .call()
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        self.answer(response, path)
    }

    /// The rows of a query, each an array of values.
    fn query(&self, sql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let response = self
            .agent
            .post(&format!("{}/api/v1/query", self.server))
            .send_json(serde_json::json!({ "sql": sql }))
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let mut body = self.answer(response, "a query")?;
        match body["rows"].take() {
            serde_json::Value::Array(rows) => Ok(rows),
            _ => bail!("the query answer has no rows"),
        }
    }
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn manifest_topic(manifest: &Manifest) -> anyhow::Result<String> {
    manifest
        .destination
        .strip_prefix("kafka://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, topic)| topic.to_string())
        .context("the manifest names no topic; pass --topic")
}

/// The topic's partitions; with `follow`, waits for the topic to appear.
fn wait_for_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    follow: bool,
    timeout: Duration,
) -> anyhow::Result<Vec<i32>> {
    let started = Instant::now();
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .context("fetching metadata")?;
        let partitions: Vec<i32> = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if !partitions.is_empty() {
            return Ok(partitions);
        }
        if !follow || started.elapsed() > timeout {
            bail!("topic {topic} does not exist");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
