//! What an image costs in S3 requests, measured: the ordinary life of
//! [`N`] images — uploaded over HTTP through the real api router, processed
//! by the real processor, swept by the real sweeper a retention period
//! later until nothing of them is left — in this process, each mode on a
//! counting store of its own over one filesystem lake. Requests are
//! counted per image by S3 billing class and by who makes them, and
//! checked against the "Cost model" section of infra/README.md: a change
//! to the code that changes them fails here until the README says so.
//!
//! Run `cargo test -p imgpipe --test e2e cost -- --nocapture` to see the
//! numbers (and the dollars they come to at a million images a month).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use lake::{
    Delivery, EventSource, FixedClock, ImageId, ImageReceived, Layout, SharedStore, Source,
    access::{self, Access, Op},
    admission::Admission,
    layout::{self, Area},
    store::{FsStore, counting::Counting},
};
use serde_json::Value;

const RETENTION: Duration = Duration::days(7);

/// Images measured. At a million images a month (the README's volume) a
/// minute brings ≈ 23 images and an hour ≈ 1,400: 50 images are a couple
/// of minutes of that traffic, enough that what is paid once per metadata
/// flush, per hour or per sweeper pass is shared as it is at volume rather
/// than charged to one image (with 1 image a Parquet flush would look like
/// a whole PUT per image), and small enough to process in seconds. Per-hour
/// work (closing the hour) is still shared by 50 here, not by 1,400, so it
/// is overstated by a few hundredths of a request per image at most. With
/// 50, every per-image number is a multiple of 0.02: exact in two decimals.
const N: usize = 50;
/// Images per processor run, so per metadata file: each run ends with its
/// flush. At a million a month, prod's two processors each flush about a
/// minute's share, ≈ 12 rows, every `processor.flush_interval` (60 s).
const PER_FLUSH: usize = 10;
/// `retention.sweep_interval`'s default (lake/src/config.rs): a pass a
/// minute, 730 hours a month.
const PASSES_A_MONTH: f64 = 730.0 * 60.0;
/// Per million images a month, in $ per request per image (list prices of
/// the README's first paragraph: PUT/LIST $0.005 per 1,000, GET $0.0004).
const PUT_PER_M: f64 = 5.0;
const GET_PER_M: f64 = 0.4;

// ---------------------------------------------------------------- counting

/// Requests by S3 billing class.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Requests {
    /// PUT (and presigned PUT URLs handed out): `Op::Write`.
    put: u64,
    /// GET and HEAD: `Op::Read`.
    get: u64,
    /// LIST requests: one per page of 1000, as `Counting::requests` counts.
    list: u64,
    /// DELETE (a delete marker or a version for good): free on S3.
    delete: u64,
}

impl Requests {
    fn minus(self, o: Self) -> Self {
        let sub = |a: u64, b: u64, what: &str| {
            a.checked_sub(b).unwrap_or_else(|| {
                panic!("{what}: {b} requests to take from {a}: the baseline made more")
            })
        };
        Self {
            put: sub(self.put, o.put, "PUT"),
            get: sub(self.get, o.get, "GET"),
            list: sub(self.list, o.list, "LIST"),
            delete: sub(self.delete, o.delete, "DELETE"),
        }
    }

    fn plus(self, o: Self) -> Self {
        Self {
            put: self.put + o.put,
            get: self.get + o.get,
            list: self.list + o.list,
            delete: self.delete + o.delete,
        }
    }
}

/// Where a counting store was: requests seen, listing pages counted.
#[derive(Debug, Clone, Copy)]
struct Mark {
    accesses: usize,
    pages: u64,
}

fn mark(c: &Counting) -> Mark {
    Mark {
        accesses: c.accesses().len(),
        pages: c.requests(),
    }
}

/// The requests `c` was asked for since `m`.
fn since(c: &Counting, m: Mark) -> (Requests, Vec<Access>) {
    let made: Vec<Access> = c.accesses()[m.accesses..].to_vec();
    let count = |f: fn(Op) -> bool| made.iter().filter(|a| f(a.op)).count() as u64;
    let r = Requests {
        put: count(|op| op == Op::Write),
        get: count(|op| op == Op::Read),
        list: c.requests() - m.pages,
        delete: count(|op| matches!(op, Op::Delete | Op::DeleteVersion)),
    };
    (r, made)
}

/// Requests by (operation, area), to say where the numbers come from.
fn breakdown(made: &[Access]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for a in made {
        let area = access::area_of(&a.key).map_or_else(|| a.key.clone(), |ar| ar.prefix().into());
        *out.entry(format!("{:?} {area}", a.op)).or_default() += 1;
    }
    out
}

fn add(to: &mut BTreeMap<String, i64>, more: BTreeMap<String, i64>) {
    for (what, n) in more {
        *to.entry(what).or_default() += n;
    }
}

/// A store for one mode: every request it makes, counted.
fn counting(fs: &SharedStore) -> Arc<Counting> {
    Arc::new(Counting::new(fs.clone()))
}

// ---------------------------------------------------------------- images

/// `n` distinct small JPEGs: the request count does not depend on size
/// (one PUT per object, no multipart), and small ones process quickly.
fn images(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let i = i as u32;
            let img = image::RgbImage::from_fn(320, 240, |x, y| {
                image::Rgb([
                    (x + 5 * i) as u8,
                    (y * 2 + i) as u8,
                    ((x ^ y) + 3 * i) as u8,
                ])
            });
            let mut out = std::io::Cursor::new(Vec::new());
            image::DynamicImage::ImageRgb8(img)
                .write_to(&mut out, image::ImageFormat::Jpeg)
                .unwrap();
            Bytes::from(out.into_inner())
        })
        .collect()
}

// ---------------------------------------------------------------- processing

/// Events handed over in order, then none, as the events topic's consumer
/// does for `imgpipe process` beside other processors (prod runs two or
/// more). Marks its processor's store when first asked for an event: what
/// came before is the processor's start-up, not the images'.
struct Batch {
    queue: VecDeque<ImageReceived>,
    store: Arc<Counting>,
    started: Arc<Mutex<Option<Mark>>>,
}

#[async_trait::async_trait]
impl EventSource for Batch {
    async fn next(&mut self) -> Option<Delivery> {
        let mut started = self.started.lock().unwrap();
        if started.is_none() {
            *started = Some(mark(&self.store));
        }
        drop(started);
        self.queue.pop_front().map(|e| Delivery::new(e, || {}))
    }
    fn has_peers(&self) -> bool {
        true
    }
}

/// One processor run over `events`: its requests for them (start-up
/// excluded) and for its start-up.
async fn process(
    store: &Arc<Counting>,
    clock: lake::SharedClock,
    events: Vec<ImageReceived>,
) -> (Requests, Vec<Access>, Requests) {
    let before = mark(store);
    let started = Arc::new(Mutex::new(None));
    let processor = processor::Processor::new(
        &processor::ProcessorConfig::default(),
        Layout::new(RETENTION),
        store.clone(),
        clock,
    )
    .unwrap();
    let source = Batch {
        queue: events.into(),
        store: store.clone(),
        started: started.clone(),
    };
    processor.run(source, std::future::pending()).await;
    let started = started
        .lock()
        .unwrap()
        .expect("the processor asked for events");
    let (startup, _) = since(store, before);
    let (work, made) = since(store, started);
    let startup = startup.minus(work);
    (work, made, startup)
}

// ---------------------------------------------------------------- sweeping

/// One sweeper pass at `at`, and the same pass again right after: the
/// repeat finds nothing left to do, so it costs what a pass costs over a
/// lake of this shape anyway; the difference is what the pass did for the
/// images. Returns pass − repeat, the same by (operation, area), and the
/// repeat with its requests by (operation, area).
async fn sweep_at(
    sweeper: &retention::Sweeper,
    clock: &FixedClock,
    store: &Counting,
    at: DateTime<Utc>,
) -> (
    Requests,
    BTreeMap<String, i64>,
    Requests,
    BTreeMap<String, i64>,
) {
    clock.set(at);
    let m = mark(store);
    sweeper.sweep_once().await.unwrap();
    let (pass, made) = since(store, m);
    let m = mark(store);
    let again = sweeper.sweep_once().await.unwrap();
    let (repeat, repeated) = since(store, m);
    assert_eq!(
        (again.purged, again.rows_purged, again.hours_checkpointed),
        (0, 0, 0),
        "the repeat at {at} still had work: {again:?}"
    );
    let repeated = breakdown(&repeated);
    let mut net = breakdown(&made);
    for (what, n) in &repeated {
        *net.entry(what.clone()).or_default() -= n;
    }
    net.retain(|_, n| *n != 0);
    (pass.minus(repeat), net, repeat, repeated)
}

/// Objects (and metadata rows) left of `ids` anywhere in the lake.
async fn left_of(fs: &SharedStore, ids: &BTreeSet<ImageId>, hour: DateTime<Utc>) -> Vec<String> {
    let mut left = Vec::new();
    for area in Area::ALL {
        for o in fs.list(area.prefix()).await.unwrap() {
            if area == Area::Metadata {
                continue;
            }
            if layout::parse_key(&o.key).is_ok_and(|p| ids.contains(&p.id)) {
                left.push(o.key);
            }
        }
    }
    // Metadata files are named by their newest row: look at the rows.
    for (key, _) in lake::metadata::files_of_hour(fs, hour).await.unwrap() {
        let file = fs.get(&key).await.unwrap().unwrap();
        let rows = lake::schema::read_ids(file).unwrap();
        let ours = rows.iter().filter(|id| ids.contains(id)).count();
        if ours > 0 {
            left.push(format!("{key} ({ours} rows)"));
        }
    }
    left
}

// ---------------------------------------------------------------- the README

/// A per-image number as the README writes it: whole, or two decimals.
fn show(x: f64) -> String {
    if (x - x.round()).abs() < 0.005 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').to_owned()
    }
}

/// One row of the README's measured table: label and (api, processor,
/// sweeper, total); `None` where the column does not apply.
type Row = (&'static str, [Option<f64>; 4]);

/// The "Cost model" section of infra/README.md.
fn cost_section() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/README.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("## Cost model")
        .expect("a \"## Cost model\" section");
    let rest = &text[start + 2..];
    let end = rest.find("\n## ").map_or(rest.len(), |e| e + 1);
    rest[..end].to_owned()
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().trim_matches('*').trim().to_owned())
        .collect()
}

/// The number written just before `phrase` in `text` ("9.02 per image").
fn number_before(text: &str, phrase: &str) -> Option<f64> {
    let at = text.find(phrase)?;
    let word = text[..at].split_whitespace().last()?;
    word.trim_matches(|c: char| !c.is_ascii_digit() && c != '.')
        .replace(',', "")
        .parse()
        .ok()
}

/// Differences between the measured `rows` and the README's cost section.
fn readme_differences(section: &str, rows: &[Row], cost_rows: &[(&str, &str, f64)]) -> Vec<String> {
    let mut wrong = Vec::new();
    let header = "| S3 requests, measured |";
    let table: Vec<Vec<String>> = match section.find(header) {
        None => {
            wrong.push(format!("no table whose header starts with `{header}`"));
            Vec::new()
        }
        Some(at) => section[at..]
            .lines()
            .take_while(|l| l.trim_start().starts_with('|'))
            .map(cells)
            .collect(),
    };
    for (label, measured) in rows {
        let Some(row) = table.iter().find(|c| c[0] == *label) else {
            wrong.push(format!("no row `{label}` in the measured table"));
            continue;
        };
        for (i, m) in measured.iter().enumerate() {
            let written = row.get(i + 1).map_or("", String::as_str);
            let ok = match m {
                None => written.is_empty() || written == "–" || written == "-",
                Some(m) => written
                    .replace(',', "")
                    .parse::<f64>()
                    .is_ok_and(|w| (w - m).abs() < 0.005),
            };
            if !ok {
                let col = ["api", "processor", "sweeper", "total"][i];
                wrong.push(format!(
                    "`{label}`, {col}: README says `{written}`, measured {}",
                    m.map_or("nothing".into(), show)
                ));
            }
        }
    }
    // The priced rows quote the same numbers.
    for (row, phrase, measured) in cost_rows {
        let Some(line) = section
            .lines()
            .find(|l| l.starts_with(&format!("| {row} |")))
        else {
            wrong.push(format!("no cost row `| {row} |`"));
            continue;
        };
        let written = number_before(line, phrase);
        if written.is_none_or(|w| (w - measured).abs() >= 0.005) {
            wrong.push(format!(
                "cost row `{row}`: README says {} {phrase}, measured {}",
                written.map_or("no number".into(), show),
                show(*measured)
            ));
        }
    }
    wrong
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread")]
async fn requests_per_image_are_the_readme_cost_model() {
    let dir = tempfile::tempdir().unwrap();
    let fs: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
    let (api_store, processor_store, sweeper_store) = (counting(&fs), counting(&fs), counting(&fs));

    // Mid-hour, so the N uploads share an hour (and its partitions).
    let hour = layout::hour_start(Utc::now()) - Duration::hours(1);
    let t0 = hour + Duration::minutes(30);

    // ---- api: `imgpipe serve`, uploads without an Idempotency-Key.
    let api_clock = Arc::new(FixedClock::new(t0));
    let (base, mut rx) =
        crate::common::serve_in_process(api_store.clone(), api_clock.clone(), 2 * N).await;
    let http = crate::common::client();
    let m = mark(&api_store);
    let mut ids = BTreeSet::new();
    for image in images(N) {
        api_clock.advance(Duration::seconds(1));
        let resp = http
            .post(format!("{base}/v1/images"))
            .body(image)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        ids.insert(body["id"].as_str().unwrap().parse::<ImageId>().unwrap());
    }
    let (api, api_made) = since(&api_store, m);
    let mut events = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    assert_eq!(events.len(), N);

    // The images after them: the lake at volume always holds images just
    // younger than the sweeper's cutoff. One more, later in the same hour,
    // admitted and processed uncounted, keeps the hour's partitions there
    // when these N expire, so a pass over the lake has the shape it has
    // every minute at volume.
    let later = {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let admission = Admission::new(
            fs.clone(),
            Arc::new(FixedClock::new(t0 + Duration::minutes(20))),
            Layout::new(RETENTION),
            Arc::new(tx),
        );
        let data = images(N + 1).pop().unwrap();
        admission
            .admit(lake::admission::Incoming {
                format: match lake::sniff::sniff(&data) {
                    lake::sniff::Sniffed::Supported(f) => f,
                    other => panic!("{other:?}"),
                },
                data,
                source: Source::Http,
                source_ref: None,
                dedup_key: None,
                on_reuse: lake::admission::Reuse::Refuse,
                request_id: None,
                arrived_at: None,
            })
            .await
            .unwrap();
        rx.try_recv().unwrap()
    };

    // ---- processor: `imgpipe process`, a run per metadata flush.
    let processor_clock = Arc::new(FixedClock::new(t0 + Duration::minutes(1)));
    let mut processor = Requests::default();
    let mut processor_made = Vec::new();
    let mut startups = Vec::new();
    for batch in events.chunks(PER_FLUSH) {
        let (work, made, startup) =
            process(&processor_store, processor_clock.clone(), batch.to_vec()).await;
        processor = processor.plus(work);
        processor_made.extend(made);
        startups.push(startup);
    }
    for id in &ids {
        assert!(
            fs.exists(&layout::manifest_key(*id)).await.unwrap(),
            "{id} was not processed"
        );
    }
    let fs_store = Arc::new(Counting::new(fs.clone()));
    process(
        &fs_store,
        Arc::new(FixedClock::new(t0 + Duration::minutes(21))),
        vec![later.clone()],
    )
    .await;

    // ---- sweeper: `imgpipe sweep`, one sweeper all along.
    let sweeper_clock = Arc::new(FixedClock::new(t0));
    let sweeper = retention::Sweeper::new(sweeper_store.clone(), sweeper_clock.clone(), RETENTION);
    let mut sweep = Requests::default();
    let mut sweep_made: BTreeMap<String, i64> = BTreeMap::new();
    // The hour settles: its images checked, its metadata files merged, its
    // checkpoint left (per hour, so shared by the images of the hour).
    let settled = hour + Duration::hours(1) + lake::reconcile::SETTLE + Duration::minutes(1);
    let (work, net, _, _) = sweep_at(&sweeper, &sweeper_clock, &sweeper_store, settled).await;
    sweep = sweep.plus(work);
    add(&mut sweep_made, net);
    // A retention period later, just before the hour starts to expire:
    // this pass also finishes cut-short erasures (hourly, not per image);
    // its repeat does not.
    let (resume, resumed, _, _) = sweep_at(
        &sweeper,
        &sweeper_clock,
        &sweeper_store,
        hour + RETENTION - Duration::seconds(1),
    )
    .await;
    // Then the N expire (the later image does not yet), a pass a minute
    // until nothing of them is left. The repeat of the first is the pass
    // that runs every minute with nothing expiring.
    let mut at = t0 + RETENTION + Duration::minutes(2);
    let mut idle = None;
    loop {
        let (work, net, repeat, repeated) =
            sweep_at(&sweeper, &sweeper_clock, &sweeper_store, at).await;
        sweep = sweep.plus(work);
        add(&mut sweep_made, net);
        idle.get_or_insert((repeat, repeated));
        if left_of(&fs, &ids, hour).await.is_empty() {
            break;
        }
        at += Duration::minutes(1);
        assert!(
            at < t0 + RETENTION + Duration::minutes(15),
            "still left after sweeping: {:?}",
            left_of(&fs, &ids, hour).await
        );
    }
    let (idle, idle_made) = idle.unwrap();
    // And the later image, with it the last of the lake.
    let last = retention::Sweeper::new(
        fs.clone(),
        Arc::new(FixedClock::new(
            later.id.received_at() + RETENTION + Duration::minutes(1),
        )),
        RETENTION,
    );
    last.sweep_once().await.unwrap();
    for area in Area::ALL {
        let objects = fs.list(area.prefix()).await.unwrap();
        assert!(objects.is_empty(), "left in {}: {objects:?}", area.prefix());
    }

    // ---- per image
    let per = |x: u64| x as f64 / N as f64;
    let modes = [api, processor, sweep];
    let total = api.plus(processor).plus(sweep);
    let row = |label: &'static str, f: fn(&Requests) -> u64| -> Row {
        (
            label,
            [
                Some(per(f(&modes[0]))),
                Some(per(f(&modes[1]))),
                Some(per(f(&modes[2]))),
                Some(per(f(&total))),
            ],
        )
    };
    let per_pass = |label: &'static str, x: u64| -> Row {
        (label, [None, None, Some(x as f64), Some(x as f64)])
    };
    let rows: Vec<Row> = vec![
        row("PUT per image", |r| r.put),
        row("GET/HEAD per image", |r| r.get),
        row("LIST per image", |r| r.list),
        row("DELETE per image (free)", |r| r.delete),
        per_pass("LIST per sweeper pass, nothing expiring", idle.list),
        per_pass("GET/HEAD per sweeper pass, nothing expiring", idle.get),
        per_pass("LIST per hourly erasure check", resume.list),
    ];
    assert_eq!(
        (idle.put, idle.delete, resume.put, resume.get, resume.delete),
        (0, 0, 0, 0, 0),
        "an idle pass that writes or reads: the table has no row for it (idle {idle:?}, hourly {resume:?})"
    );
    let app_list = per(api.list + processor.list);
    let cost_rows = [
        ("S3 PUT", "per image", per(total.put)),
        ("S3 GET/HEAD", "per image", per(total.get)),
        ("S3 LIST by the app", "per image", app_list),
        ("S3 LIST by the sweeper", "per image", per(sweep.list)),
        ("S3 LIST by the sweeper", "per pass", idle.list as f64),
        (
            "S3 DELETE, lifecycle expiry",
            "per image",
            per(total.delete),
        ),
    ];

    // What to write, and where it comes from.
    let mut table = String::from(
        "| S3 requests, measured | api | processor | sweeper | total |\n|---|---|---|---|---|\n",
    );
    for (label, cols) in &rows {
        let c: Vec<String> = cols.iter().map(|c| c.map_or("–".into(), show)).collect();
        table += &format!("| {label} | {} |\n", c.join(" | "));
    }
    let sweeper_list_dollars = per(sweep.list) * PUT_PER_M
        + (idle.list as f64 * PASSES_A_MONTH + resume.list as f64 * 730.0) * 0.005 / 1000.0;
    let dollars = format!(
        "per million images a month: PUT ${:.2}, GET/HEAD ${:.2} (+ ${:.2} of the sweeper's idle reads), \
         LIST by the app ${:.2}, LIST by the sweeper ${:.2} ({} per pass × {PASSES_A_MONTH} passes + {} hourly)",
        per(total.put) * PUT_PER_M,
        per(total.get) * GET_PER_M,
        idle.get as f64 * PASSES_A_MONTH * 0.0004 / 1000.0,
        app_list * PUT_PER_M,
        sweeper_list_dollars,
        idle.list,
        resume.list,
    );
    let startup = startups[0];
    println!("{table}\n{dollars}");
    println!(
        "processor start-up (per start, not per image): {startup:?}; later starts: {startups:?}"
    );
    let by_area = [
        ("api", breakdown(&api_made)),
        ("processor", breakdown(&processor_made)),
        ("sweeper (each pass less its repeat)", sweep_made),
    ];
    for (mode, made) in by_area {
        println!("{mode}, over {N} images:");
        for (what, n) in made {
            println!("  {what}: {n} ({} per image)", show(n as f64 / N as f64));
        }
    }
    println!("sweeper pass with nothing expiring: {idle_made:?}; hourly, on top: {resumed:?}");

    let wrong = readme_differences(&cost_section(), &rows, &cost_rows);
    assert!(
        wrong.is_empty(),
        "infra/README.md's cost model no longer matches the requests the code makes:\n  {}\n\n\
         Measured (update the \"Cost model\" section of infra/README.md with these):\n{table}\n{dollars}",
        wrong.join("\n  ")
    );
}
