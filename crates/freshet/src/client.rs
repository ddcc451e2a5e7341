//! The built-in Kafka client commands (`freshet topic`, `produce`,
//! `consume`, `group`). They speak the Kafka protocol through librdkafka
//! (the `rdkafka` crate), so they work against Freshet or any other
//! Kafka-protocol cluster.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// librdkafka reports reaching a partition's end as an error; for a
/// command-line consumer that is the normal way to finish, not news.
#[derive(Debug, Clone, Copy, Default)]
struct CliContext;

impl ClientContext for CliContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !matches!(error, rdkafka::error::KafkaError::PartitionEOF(_)) {
            tracing::error!(%error, reason, "kafka client");
        }
    }
}

impl ConsumerContext for CliContext {}

#[derive(Debug, Args)]
pub struct Connection {
    /// Kafka bootstrap servers (Freshet's Kafka listener, or any cluster).
    #[arg(
        long,
        short = 'b',
        env = "FRESHET_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
}

impl Connection {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "3");
        config
    }
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// Topic settings by their Kafka names, e.g. retention.ms=3600000 (repeatable).
        #[arg(long = "config", short = 'c', value_parser = key_value)]
        configs: Vec<(String, String)>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List topics with their partition counts.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a topic's partitions, offsets and settings.
    Describe {
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Grow a topic to more partitions.
    Grow {
        name: String,
        #[arg(long, short = 'p')]
        partitions: usize,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each input line into key and value at the first occurrence of this.
    #[arg(long, short = 'K')]
    key_separator: Option<String>,
    /// A header added to every record, NAME=VALUE (repeatable; names may repeat).
    #[arg(long = "header", short = 'H', value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Consume as a member of this group, committing what was printed.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Where to start without a committed offset: earliest, latest, an offset, or @TIMESTAMP_MS.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Stop once every partition is read to its end.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Output line: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp, %h headers.
    #[arg(long, short = 'f', default_value = "%v")]
    format: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a group's members and, per partition, its committed offset and lag.
    Describe {
        group: String,
        #[command(flatten)]
        connection: Connection,
    },
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))
}

fn admin(connection: &Connection) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    connection
        .config()
        .create()
        .context("creating the Kafka admin client")
}

fn check(
    results: Vec<Result<String, (String, rdkafka::types::RDKafkaErrorCode)>>,
) -> anyhow::Result<()> {
    for result in results {
        if let Err((name, code)) = result {
            bail!("{name}: {code}");
        }
    }
    Ok(())
}

pub async fn topic(command: TopicCommand) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            configs,
            connection,
        } => {
            let mut topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
            for (key, value) in &configs {
                topic = topic.set(key, value);
            }
            check(
                admin(&connection)?
                    .create_topics(&[topic], &AdminOptions::new())
                    .await?,
            )?;
            println!("created topic {name} with {partitions} partitions");
        }
        TopicCommand::Grow {
            name,
            partitions,
            connection,
        } => {
            check(
                admin(&connection)?
                    .create_partitions(
                        &[NewPartitions::new(&name, partitions)],
                        &AdminOptions::new(),
                    )
                    .await?,
            )?;
            println!("topic {name} now has {partitions} partitions");
        }
        TopicCommand::Delete { name, connection } => {
            check(
                admin(&connection)?
                    .delete_topics(&[&name], &AdminOptions::new())
                    .await?,
            )?;
            println!("deleted topic {name}");
        }
        TopicCommand::List { connection } => {
            let consumer: BaseConsumer = connection.config().create()?;
            let metadata = consumer
                .fetch_metadata(None, TIMEOUT)
                .context("fetching metadata")?;
            println!("{:<40} {:>10}", "TOPIC", "PARTITIONS");
            for topic in metadata
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__"))
            {
                println!("{:<40} {:>10}", topic.name(), topic.partitions().len());
            }
        }
        TopicCommand::Describe { name, connection } => {
            let consumer: BaseConsumer = connection.config().create()?;
            let metadata = consumer
                .fetch_metadata(Some(&name), TIMEOUT)
                .context("fetching metadata")?;
            let topic = metadata.topics().first().context("no metadata returned")?;
            if let Some(error) = topic.error() {
                bail!("topic {name}: {error:?}");
            }
            println!("topic {name}: {} partitions", topic.partitions().len());
            println!(
                "{:>9} {:>8} {:>14} {:>14}",
                "PARTITION", "LEADER", "START", "END"
            );
            for partition in topic.partitions() {
                let (low, high) = consumer.fetch_watermarks(&name, partition.id(), TIMEOUT)?;
                println!(
                    "{:>9} {:>8} {:>14} {:>14}",
                    partition.id(),
                    partition.leader(),
                    low,
                    high
                );
            }
            let described = admin(&connection)?
                .describe_configs(&[ResourceSpecifier::Topic(&name)], &AdminOptions::new())
                .await?;
            for resource in described.into_iter().flatten() {
                for entry in resource.entries {
                    println!("  {} = {}", entry.name, entry.value.unwrap_or_default());
                }
            }
        }
    }
    Ok(())
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let producer: FutureProducer = args
        .connection
        .config()
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set(
            "enable.idempotence",
            if args.acks == "all" { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .create()
        .context("creating the Kafka producer")?;
    let mut pending = Vec::new();
    let mut produced = 0u64;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading standard input")?;
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.to_string()), value.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let mut headers = OwnedHeaders::new();
        for (name, value) in &args.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let topic = args.topic.clone();
        let producer = producer.clone();
        pending.push(tokio::spawn(async move {
            let mut record = FutureRecord::to(&topic).payload(&value).headers(headers);
            if let Some(key) = &key {
                record = record.key(key);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(error, _)| error)
        }));
        produced += 1;
    }
    for sent in pending {
        sent.await?.context("producing a record")?;
    }
    eprintln!("produced {produced} records to {}", args.topic);
    Ok(())
}

/// Where `freshet consume` starts reading without a group.
#[derive(Debug, Clone, Copy)]
enum StartAt {
    Offset(Offset),
    /// The first record at or after this timestamp (ms), through ListOffsets.
    Timestamp(i64),
}

fn start_at(from: &str) -> anyhow::Result<StartAt> {
    Ok(match from {
        "earliest" | "beginning" => StartAt::Offset(Offset::Beginning),
        "latest" | "end" => StartAt::Offset(Offset::End),
        text if text.starts_with('@') => {
            StartAt::Timestamp(text[1..].parse().context("--from @TIMESTAMP_MS")?)
        }
        text => StartAt::Offset(Offset::Offset(text.parse().with_context(|| {
            format!("--from '{text}': earliest, latest, an offset or @TIMESTAMP_MS")
        })?)),
    })
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| "freshet-consume-without-group".to_string());
    let consumer: StreamConsumer<CliContext> = args
        .connection
        .config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set(
            "auto.offset.reset",
            if args.from == "latest" {
                "latest"
            } else {
                "earliest"
            },
        )
        .create_with_context(CliContext)
        .context("creating the Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), TIMEOUT)
        .context("fetching metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {} does not exist or has no partitions", args.topic);
    }
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic])?;
    } else {
        let mut assignment = TopicPartitionList::new();
        match start_at(&args.from)? {
            StartAt::Offset(offset) => {
                for &partition in &partitions {
                    assignment.add_partition_offset(&args.topic, partition, offset)?;
                }
            }
            StartAt::Timestamp(timestamp_ms) => {
                let mut query = TopicPartitionList::new();
                for &partition in &partitions {
                    query.add_partition_offset(
                        &args.topic,
                        partition,
                        Offset::Offset(timestamp_ms),
                    )?;
                }
                assignment = consumer
                    .offsets_for_times(query, TIMEOUT)
                    .context("looking up offsets by timestamp")?;
            }
        }
        consumer.assign(&assignment)?;
    }
    let mut printed = 0u64;
    let mut at_end = std::collections::HashSet::new();
    let stdout = std::io::stdout();
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            break;
        }
        match consumer.recv().await {
            Ok(message) => {
                at_end.remove(&message.partition());
                let line = format_message(&args.format, &message);
                writeln!(stdout.lock(), "{line}")?;
                printed += 1;
                if args.group.is_some() {
                    consumer.commit_message(&message, CommitMode::Async)?;
                }
            }
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                at_end.insert(partition);
                if args.exit_at_end && at_end.len() >= partitions.len() {
                    break;
                }
            }
            Err(error) => return Err(error).context("consuming"),
        }
    }
    if args.group.is_some() {
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    }
    eprintln!("consumed {printed} records from {}", args.topic);
    Ok(())
}

fn format_message<M: Message>(format: &str, message: &M) -> String {
    let text = |bytes: Option<&[u8]>| {
        bytes
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| format!("{}={}", h.key, text(h.value)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format
        .replace("%t", message.topic())
        .replace("%p", &message.partition().to_string())
        .replace("%o", &message.offset().to_string())
        .replace(
            "%T",
            &message.timestamp().to_millis().unwrap_or(-1).to_string(),
        )
        .replace("%h", &headers)
        .replace("%k", &text(message.key()))
        .replace("%v", &text(message.payload()))
}

pub async fn group(command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::List { connection } => {
            let consumer: BaseConsumer = connection.config().create()?;
            let groups = consumer
                .fetch_group_list(None, TIMEOUT)
                .context("listing groups")?;
            println!("{:<40} {:<20} {:>8}", "GROUP", "STATE", "MEMBERS");
            for group in groups.groups() {
                println!(
                    "{:<40} {:<20} {:>8}",
                    group.name(),
                    group.state(),
                    group.members().len()
                );
            }
        }
        GroupCommand::Describe { group, connection } => {
            let probe: BaseConsumer = connection.config().set("group.id", &group).create()?;
            let groups = probe
                .fetch_group_list(Some(&group), TIMEOUT)
                .context("describing the group")?;
            let described = groups.groups().first().context("no such group")?;
            println!(
                "group {group}: {} ({} members)",
                described.state(),
                described.members().len()
            );
            for member in described.members() {
                println!(
                    "  member {} client {} host {}",
                    member.id(),
                    member.client_id(),
                    member.client_host()
                );
            }
            let metadata = probe.fetch_metadata(None, TIMEOUT)?;
            let mut all = TopicPartitionList::new();
            for topic in metadata
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__"))
            {
                for partition in topic.partitions() {
                    all.add_partition(topic.name(), partition.id());
                }
            }
            let committed = probe
                .committed_offsets(all, TIMEOUT)
                .context("fetching committed offsets")?;
            println!(
                "{:<30} {:>9} {:>12} {:>12} {:>10}",
                "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
            );
            for element in committed.elements() {
                let Offset::Offset(position) = element.offset() else {
                    continue;
                };
                let (_, end) =
                    probe.fetch_watermarks(element.topic(), element.partition(), TIMEOUT)?;
                println!(
                    "{:<30} {:>9} {:>12} {:>12} {:>10}",
                    element.topic(),
                    element.partition(),
                    position,
                    end,
                    end - position
                );
            }
        }
    }
    Ok(())
}
