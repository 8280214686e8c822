//! `cortex bench`: drives a running broker over QUIC and reports latency percentiles from
//! an HDR histogram (microseconds).
//!
//! - `disk`: the physical floor, with no broker: 100-byte appends to a scratch file in
//!   `--data-dir`, each followed by fdatasync. Every other workload first measures this
//!   floor for `--floor-seconds` (default 2) in the same run and prints its latencies as
//!   ratios to it, since absolute times on shared machines swing from day to day.
//! - `publish`: `--publishers` tasks, each publishing `--batch` 100-byte messages per call
//!   as fast as acks come back; latency is per call (durable ack), throughput per message.
//! - `deliver`: publishes at a fixed `--rate` (open loop: each message has a scheduled
//!   time, and latency runs from that time, so a stall is not hidden by slowing down) to a
//!   push subscriber that acks; latency is schedule -> delivery. The same publishes'
//!   acknowledgements (schedule -> ack) are reported beside it, the floor a push is judged
//!   against (`p99_minus_ack_us`). It also checks that every publish the broker
//!   acknowledged was delivered (within 5 s after the run): `lost`. With `--delay-ms`
//!   every message is scheduled that far ahead and latency is delivery minus the time the
//!   broker settled for it (schedule accuracy).
//! - `reqrep`: one requester, one responder (the same agent, serving its own inbox):
//!   round trips through the broker, both hops durable. With `--responder-server` the
//!   responder connects to that node instead (request/reply between two cluster nodes).
//! - `cancel`: cancel latency. A worker (the same agent, on its own connection; on
//!   `--responder-server` if given) holds a task; the submitter cancels it; latency runs
//!   from the cancel call to the worker receiving the signal. The cancel calls' own
//!   acknowledgements are reported beside it (`ack_*`), the floor the signal is judged
//!   against, and `lost` counts signals that never came (within 10 s).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Mutex;

use super::{ConnFlags, Exit};
use crate::client::{Client, Message, SubscribeOptions};

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// The disk's floor: 100-byte append + fdatasync (no broker).
    Disk,
    /// Durable publish acks.
    Publish,
    /// Publish -> push delivery at a fixed rate.
    Deliver,
    /// Request/reply round trips.
    Reqrep,
    /// Cancel call -> the holder receiving the cancel signal.
    Cancel,
}

/// `cortex bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// disk, publish, deliver, reqrep or cancel.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent publishers (publish).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Messages per publish call (publish).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Messages per second (deliver).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// deliver: schedule every message this many ms after it is stored; latency is then
    /// delivery minus its `cortex-deliver-at-ms` (schedule accuracy, ms resolution).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Bytes per message body.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds the disk floor is measured before the workload (0: not measured).
    #[arg(long, default_value_t = 2)]
    pub floor_seconds: u64,
    /// reqrep, cancel: the responder (worker) connects to this node (another node of the
    /// cluster) instead of the requester's.
    #[arg(long)]
    pub responder_server: Option<std::net::SocketAddr>,
    /// reqrep: the data dir holding the responder node's certificate (with neither --ca nor
    /// --fingerprint) [default: --data-dir].
    #[arg(long)]
    pub responder_data_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub conn: ConnFlags,
}

fn histogram() -> Histogram<u64> {
    // 1 us .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn progress(args: &BenchArgs) -> indicatif::ProgressBar {
    if args.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(args.duration);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} s")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// Runs a benchmark and prints its figures.
/// 100-byte appends to a scratch file in `dir`, each followed by fdatasync, for `duration`:
/// the latency histogram (us) and the count.
fn disk_floor(dir: &std::path::Path, duration: Duration) -> Result<(Histogram<u64>, u64), Exit> {
    use std::io::Write;
    let failed = |e: std::io::Error| Exit {
        message: format!("measuring the disk in {}: {e}", dir.display()),
        code: 1,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let path = dir.join(format!(".cortex-bench-disk-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(failed)?;
    let record = [b'x'; 100];
    let mut hist = histogram();
    let mut count = 0u64;
    let until = Instant::now() + duration;
    let r = (|| {
        while Instant::now() < until {
            let t = Instant::now();
            f.write_all(&record)?;
            f.sync_data()?;
            let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
            count += 1;
            // Keep the file small: start again every 16 MiB.
            if count.is_multiple_of(160_000) {
                f.set_len(0)?;
            }
        }
        Ok(())
    })();
    drop(f);
    let _ = std::fs::remove_file(&path);
    r.map_err(failed)?;
    Ok((hist, count))
}

async fn measure_floor(args: &BenchArgs, seconds: u64) -> Result<(Histogram<u64>, u64), Exit> {
    let dir = args.conn.data_dir.clone();
    tokio::task::spawn_blocking(move || disk_floor(&dir, Duration::from_secs(seconds)))
        .await
        .map_err(|e| Exit {
            message: format!("measuring the disk: {e}"),
            code: 1,
        })?
}

pub async fn run(args: BenchArgs) -> Result<(), Exit> {
    if args.workload == Workload::Disk {
        return run_disk(&args).await;
    }
    // The floor first, while this run has not loaded the broker yet.
    let floor = if args.floor_seconds > 0 {
        Some(measure_floor(&args, args.floor_seconds).await?.0)
    } else {
        None
    };
    let stream = format!("bench:{:?}:{}", args.workload, crate::timespec::now_ms()).to_lowercase();
    let client = args.conn.connect("bench").await?;
    let body = vec![b'x'; args.size];
    let pb = progress(&args);
    pb.set_message(format!("{:?}", args.workload));
    let ticker = {
        let pb = pb.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                pb.inc(1);
            }
        })
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let mut losses = None;
    let (hist, count) = match args.workload {
        Workload::Publish => publish(&client, &args, &stream, &body, until).await?,
        Workload::Deliver => {
            let (hist, count, l) = deliver(&client, &args, &stream, &body, until).await?;
            losses = Some(l);
            (hist, count)
        }
        Workload::Reqrep => reqrep(&client, &args, &body, until).await?,
        Workload::Cancel => {
            let (hist, count, l) = cancel(&client, &args, &body, until).await?;
            losses = Some(l);
            (hist, count)
        }
        Workload::Disk => unreachable!("measured above"),
    };
    let elapsed = started.elapsed().as_secs_f64();
    // The server lets go of this run's subscriptions now: a run right after this one (the
    // same agent, the same consumer) gets its deliveries, not a connection that is gone.
    client.close().await;
    ticker.abort();
    pb.finish_and_clear();
    let ratio = |p: f64| {
        floor
            .as_ref()
            .map(|f| hist.value_at_quantile(p) as f64 / f.value_at_quantile(p).max(1) as f64)
    };
    let mut out = figures(&hist, count, elapsed);
    out["workload"] = json!(format!("{:?}", args.workload).to_lowercase());
    out["publishers"] = json!(args.publishers);
    out["batch"] = json!(args.batch);
    out["rate"] = json!(args.rate);
    out["delay_ms"] = json!(args.delay_ms);
    out["size"] = json!(args.size);
    out["seconds"] = json!(args.duration);
    if let Some(l) = &losses {
        let q = |p: f64| l.ack.value_at_quantile(p);
        out["ack_p50_us"] = json!(q(0.5));
        out["ack_p99_us"] = json!(q(0.99));
        out["ack_p999_us"] = json!(q(0.999));
        out["p99_minus_ack_us"] = json!(hist.value_at_quantile(0.99) as i64 - q(0.99) as i64);
        out["published"] = json!(l.published);
        out["publish_failed"] = json!(l.failed);
        out["lost"] = json!(l.lost);
    }
    if let Some(f) = &floor {
        out["disk_p50_us"] = json!(f.value_at_quantile(0.5));
        out["disk_p99_us"] = json!(f.value_at_quantile(0.99));
        out["disk_p999_us"] = json!(f.value_at_quantile(0.999));
        out["p50_over_disk"] = json!(ratio(0.5));
        out["p99_over_disk"] = json!(ratio(0.99));
        out["p999_over_disk"] = json!(ratio(0.999));
    }
    if args.json {
        println!("{out}");
    } else {
        println!(
            "{:?}: {count} ops in {elapsed:.1} s = {}",
            args.workload,
            summary(&hist, count, elapsed)
        );
        if let Some(l) = &losses {
            let q = |p: f64| l.ack.value_at_quantile(p);
            println!(
                "  the same {}' acks us: p50 {} p99 {} p99.9 {}; p99 - ack p99 = {} us",
                if args.workload == Workload::Cancel {
                    "cancel calls"
                } else {
                    "publishes"
                },
                q(0.5),
                q(0.99),
                q(0.999),
                hist.value_at_quantile(0.99) as i64 - q(0.99) as i64
            );
            if args.workload == Workload::Cancel {
                println!(
                    "  canceled {} held tasks, {} signals never came",
                    l.published, l.lost
                );
            } else {
                println!(
                    "  published {} (acknowledged), {} publishes failed, {} acknowledged and never delivered",
                    l.published, l.failed, l.lost
                );
            }
        }
        if let Some(f) = &floor {
            println!(
                "  disk floor (100 B append + fdatasync) us: p50 {} p99 {} p99.9 {}; \
                 this run over it: p50 {:.1}x p99 {:.1}x p99.9 {:.1}x",
                f.value_at_quantile(0.5),
                f.value_at_quantile(0.99),
                f.value_at_quantile(0.999),
                ratio(0.5).unwrap_or(0.0),
                ratio(0.99).unwrap_or(0.0),
                ratio(0.999).unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// `cortex bench disk`: the floor alone, for `--duration`.
async fn run_disk(args: &BenchArgs) -> Result<(), Exit> {
    let started = Instant::now();
    let (hist, count) = measure_floor(args, args.duration).await?;
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        let mut out = figures(&hist, count, elapsed);
        out["workload"] = json!("disk");
        out["dir"] = json!(args.conn.data_dir.display().to_string());
        out["size"] = json!(100);
        out["seconds"] = json!(args.duration);
        println!("{out}");
    } else {
        println!(
            "disk ({}): {count} appends of 100 B + fdatasync in {elapsed:.1} s = {}",
            args.conn.data_dir.display(),
            summary(&hist, count, elapsed)
        );
    }
    Ok(())
}

/// The figures every workload reports, as JSON: count, rate and latency percentiles (us).
fn figures(hist: &Histogram<u64>, count: u64, elapsed: f64) -> serde_json::Value {
    let q = |p: f64| hist.value_at_quantile(p);
    json!({
        "count": count,
        "ops_per_s": (count as f64 / elapsed).round(),
        "p50_us": q(0.5),
        "p90_us": q(0.9),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": hist.max(),
    })
}

/// The same figures as one line: rate and latency percentiles.
fn summary(hist: &Histogram<u64>, count: u64, elapsed: f64) -> String {
    let q = |p: f64| hist.value_at_quantile(p);
    format!(
        "{:.0}/s; latency us: p50 {} p90 {} p99 {} p99.9 {} max {}",
        count as f64 / elapsed,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        hist.max()
    )
}

async fn publish(
    client: &Client,
    args: &BenchArgs,
    stream: &str,
    body: &[u8],
    until: Instant,
) -> Result<(Histogram<u64>, u64), Exit> {
    let hist = Arc::new(Mutex::new(histogram()));
    let mut tasks = Vec::new();
    for _ in 0..args.publishers.max(1) {
        let (c, h, s, b, n) = (
            client.clone(),
            hist.clone(),
            stream.to_string(),
            body.to_vec(),
            args.batch.max(1),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            let mut count = 0u64;
            while Instant::now() < until {
                let msgs = (0..n)
                    .map(|_| Message {
                        fields: vec![(b"body".to_vec(), b.clone())],
                        lane: 2,
                        ..Message::default()
                    })
                    .collect();
                let t = Instant::now();
                for r in c.publish_batch(s.clone(), msgs).await? {
                    r?;
                }
                let _ = local.record(t.elapsed().as_micros().max(1) as u64);
                count += n as u64;
            }
            let _ = h.lock().await.add(&local);
            Ok::<u64, crate::client::ClientError>(count)
        }));
    }
    let mut count = 0;
    for t in tasks {
        count += t.await.map_err(|e| Exit {
            code: 1,
            message: e.to_string(),
        })??;
    }
    let h = hist.lock().await.clone();
    Ok((h, count))
}

/// What a deliver run published and whether all of it arrived.
struct Losses {
    /// The same publishes' acknowledgements, schedule -> ack (us).
    ack: Histogram<u64>,
    /// Publishes the broker acknowledged.
    published: u64,
    /// Publishes that failed (not counted as lost: never acknowledged).
    failed: u64,
    /// Acknowledged publishes never delivered within 5 s after the run.
    lost: u64,
}

async fn deliver(
    client: &Client,
    args: &BenchArgs,
    stream: &str,
    body: &[u8],
    until: Instant,
) -> Result<(Histogram<u64>, u64, Losses), Exit> {
    const IN_FLIGHT: u32 = 256;
    let mut opts = SubscribeOptions::new(stream);
    opts.window = 1_000;
    let mut sub = client.subscribe(opts).await?;
    let origin = Instant::now();
    let rate = args.rate.max(1);
    let interval_ns = 1_000_000_000 / rate;
    let acked = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // The same messages' publish acknowledgements (schedule -> ack): the floor a push is
    // judged against, in the same run.
    let ack_hist = Arc::new(std::sync::Mutex::new(histogram()));
    let delay_ms = args.delay_ms;
    let mut publisher = {
        let (c, s, b) = (client.clone(), stream.to_string(), body.to_vec());
        let (acked, failed, ack_hist) = (acked.clone(), failed.clone(), ack_hist.clone());
        tokio::spawn(async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
            let mut i: u64 = 0;
            loop {
                let at = origin + Duration::from_nanos(i * interval_ns);
                if at >= until {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let sched = (at - origin).as_micros() as u64;
                let mut m = Message {
                    fields: vec![
                        (b"t".to_vec(), sched.to_string().into_bytes()),
                        (b"body".to_vec(), b.clone()),
                    ],
                    lane: 2,
                    ..Message::default()
                };
                if delay_ms > 0 {
                    m = m.delay(delay_ms);
                }
                let (c, s) = (c.clone(), s.clone());
                let (acked, failed, ack_hist) = (acked.clone(), failed.clone(), ack_hist.clone());
                tokio::spawn(async move {
                    match c.publish(s, m).await {
                        Ok(p) => {
                            let now = origin.elapsed().as_micros() as u64;
                            let _ = ack_hist
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .record(now.saturating_sub(sched).max(1));
                            acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(p.id.to_string());
                        }
                        Err(_) => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                });
                i += 1;
            }
            // Every publish has its answer once all the permits are back.
            let _ = limit.acquire_many(IN_FLIGHT).await;
        })
    };
    let mut hist = histogram();
    let mut delivered = std::collections::HashSet::new();
    let mut published_all = false;
    let deadline = until + Duration::from_millis(delay_ms) + Duration::from_secs(5);
    loop {
        let d = tokio::select! {
            d = sub.next() => d,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        let Some(d) = d else { break };
        let d = d?;
        let now = origin.elapsed().as_micros() as u64;
        if delay_ms > 0 {
            // Schedule accuracy: this moment (wall clock, the broker's clock follows it)
            // minus the time the broker settled for the message.
            let wall_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            if let Some(at) = d
                .headers
                .iter()
                .find(|(k, _)| k == crate::wire::names::DELIVER_AT.as_bytes())
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            {
                let _ = hist.record(wall_us.saturating_sub(at * 1_000).max(1));
            }
        } else if let Some(t) = d
            .fields
            .iter()
            .find(|(k, _)| k == b"t")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        {
            let _ = hist.record(now.saturating_sub(t).max(1));
        }
        delivered.insert(d.id.to_string());
        // Ack without waiting, as a worker that acks after its work would.
        tokio::spawn(async move {
            let _ = d.ack().await;
        });
        if !published_all && publisher.is_finished() {
            let _ = (&mut publisher).await;
            published_all = true;
        }
        let acked = acked.lock().unwrap_or_else(|p| p.into_inner());
        if published_all && delivered.len() >= acked.len() {
            break;
        }
    }
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner());
    let ack = ack_hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let losses = Losses {
        ack,
        published: acked.len() as u64,
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        lost: acked.iter().filter(|id| !delivered.contains(*id)).count() as u64,
    };
    Ok((hist, delivered.len() as u64, losses))
}

async fn reqrep(
    client: &Client,
    args: &BenchArgs,
    body: &[u8],
    until: Instant,
) -> Result<(Histogram<u64>, u64), Exit> {
    let responder = second_connection(client, args).await?;
    let mut reqs = responder.serve(64).await?;
    let server = tokio::spawn(async move {
        while let Some(Ok(r)) = reqs.next().await {
            let fields = r.fields().to_vec();
            tokio::spawn(async move {
                let _ = r.reply(fields).await;
            });
        }
    });
    let me = client.agent().to_string();
    // Another node hears of the responder within an announcement: wait for it (10 s).
    let asked = Instant::now();
    loop {
        match client
            .request(
                &me,
                vec![(b"body".to_vec(), body.to_vec())],
                Duration::from_secs(10),
            )
            .await
        {
            Ok(_) => break,
            Err(e)
                if e.code() == Some(crate::client::ErrorCode::NoResponders)
                    && asked.elapsed() < Duration::from_secs(10) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut hist = histogram();
    let mut count = 0u64;
    while Instant::now() < until {
        let t = Instant::now();
        client
            .request(
                &me,
                vec![(b"body".to_vec(), body.to_vec())],
                Duration::from_secs(10),
            )
            .await?;
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
        count += 1;
    }
    server.abort();
    responder.close().await;
    Ok((hist, count))
}

/// A second connection of the same agent, to serve its own inbox (on another node, if
/// asked).
async fn second_connection(client: &Client, args: &BenchArgs) -> Result<Client, Exit> {
    let mut opts = args.conn.options(client.agent());
    if let Some(node) = args.responder_server {
        opts.server = node;
        opts.also.clear();
        if let (crate::client::Trust::CertFile(_), Some(dir)) =
            (&opts.trust, &args.responder_data_dir)
        {
            opts.trust = crate::client::Trust::local(dir);
        }
    }
    Ok(Client::connect(opts).await?)
}

/// One task at a time: submitted to the agent itself, taken by its worker, then canceled;
/// latency is cancel call -> signal at the worker, beside the cancel call's own ack.
async fn cancel(
    client: &Client,
    args: &BenchArgs,
    body: &[u8],
    until: Instant,
) -> Result<(Histogram<u64>, u64, Losses), Exit> {
    use crate::client::{NewTask, SubEvent};
    use crate::wire::names;
    const WAIT: Duration = Duration::from_secs(10);
    let worker = second_connection(client, args).await?;
    let me = client.agent().to_string();
    let mut opts = SubscribeOptions::new(names::inbox(&me));
    opts.group = Some(names::RESPONDERS_GROUP.into());
    opts.window = 16;
    let mut sub = worker.subscribe(opts).await?;
    let run = crate::timespec::now_ms();
    let mut hist = histogram();
    let mut ack = histogram();
    let (mut count, mut lost) = (0u64, 0u64);
    let timed_out = |what: &str| Exit {
        code: 3,
        message: format!("the worker did not receive {what} within {WAIT:?}"),
    };
    while Instant::now() < until {
        let id = format!("bench-{run}-{count}").into_bytes();
        let task = NewTask {
            id: Some(id.clone()),
            ..NewTask::new(vec![(b"body".to_vec(), body.to_vec())])
        };
        client.submit_task(&me, task).await?;
        // Held first: the cancel must overtake, not pre-empt.
        loop {
            match tokio::time::timeout(WAIT, sub.next_event()).await {
                Ok(Some(Ok(SubEvent::Delivery(d))))
                    if d.header(names::TASK).is_some_and(|t| t == id.as_slice()) =>
                {
                    break
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) | Err(_) => return Err(timed_out("the task")),
            }
        }
        let t0 = Instant::now();
        let call = async {
            client.cancel_task(&id).await?;
            Ok::<_, Exit>(t0.elapsed())
        };
        let signal = async {
            loop {
                match tokio::time::timeout(WAIT, sub.next_event()).await {
                    Ok(Some(Ok(SubEvent::Canceled { task, .. }))) if task == id => {
                        return Some(t0.elapsed())
                    }
                    Ok(Some(Ok(_))) => continue,
                    _ => return None,
                }
            }
        };
        let (called, signaled) = tokio::join!(call, signal);
        let _ = ack.record(called?.as_micros().max(1) as u64);
        match signaled {
            Some(t) => {
                let _ = hist.record(t.as_micros().max(1) as u64);
            }
            None => lost += 1,
        }
        count += 1;
    }
    worker.close().await;
    Ok((
        hist,
        count,
        Losses {
            ack,
            published: count,
            failed: 0,
            lost,
        },
    ))
}
