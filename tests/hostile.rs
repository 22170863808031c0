//! Hostile and broken peers, one at a time: a scrape target that answers too much,
//! compressed, timestamped or garbage; receivers whose error texts carry their URL.
//! Each case checks that Vigil holds no more than its limits and says what is wrong.

use std::time::Duration;

use vigil::scrape::{ScrapeConfig, scrape_once};
use vigil::settings::secret::SecretUrl;
use vigil_testkit::{Behaviour, Peer};

fn target(url: &str) -> ScrapeConfig {
    ScrapeConfig {
        job: "app".into(),
        url: SecretUrl::parse(url).unwrap(),
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(20),
        body_size_limit: vigil::scrape::DEFAULT_BODY_SIZE_LIMIT,
        sample_limit: vigil::scrape::DEFAULT_SAMPLE_LIMIT,
    }
}

fn value(samples: &[(vigil::store::Labels, f64)], name: &str) -> f64 {
    samples
        .iter()
        .find(|(l, _)| l.get("__name__") == name)
        .map(|s| s.1)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn a_300_mb_page_is_cut_at_the_body_size_limit_and_the_scrape_fails() {
    let line =
        b"http_requests_total{method=\"GET\",route=\"/api/rooms\",status=\"200\"} 1\n".to_vec();
    let total = 300u64 << 20;
    let peer = Peer::start(Behaviour::Huge { total, line });
    let client = reqwest::Client::builder().gzip(true).build().unwrap();
    let cfg = target(&peer.url("/metrics"));
    let s = scrape_once(&client, &cfg, 1_800_000_000_000).await;
    assert_eq!(
        s.error.as_deref(),
        Some("the body exceeds body_size_limit (10485760 bytes)")
    );
    assert_eq!(value(&s.samples, "up"), 0.0);
    assert_eq!(s.samples.len(), 3, "only up and the scrape's own series");
    // Reading stopped at the limit: the peer got rid of little more than that
    // (the rest is what the sockets' buffers took), not the 300 MB.
    let sent = peer.sent();
    assert!(sent < 64 << 20, "the scrape read {sent} of {total} bytes");
}

#[tokio::test]
async fn a_page_past_sample_limit_fails_whole_with_prometheus_semantics() {
    let page: String = (0..50).map(|i| format!("m{{i=\"{i}\"}} {i}\n")).collect();
    let peer = Peer::start(Behaviour::Answer(200, vec![], page.into_bytes()));
    let client = reqwest::Client::new();
    let mut cfg = target(&peer.url("/metrics"));
    cfg.sample_limit = 20;
    let s = scrape_once(&client, &cfg, 1_800_000_000_000).await;
    assert_eq!(
        s.error.as_deref(),
        Some("50 samples exceed sample_limit (20)")
    );
    assert_eq!(value(&s.samples, "up"), 0.0);
    assert_eq!(value(&s.samples, "scrape_samples_scraped"), 50.0);
    cfg.sample_limit = 50;
    let s = scrape_once(&client, &cfg, 1_800_000_000_000).await;
    assert_eq!(s.error, None);
    assert_eq!(value(&s.samples, "up"), 1.0);
    assert_eq!(s.samples.len(), 53);
}

#[tokio::test]
async fn a_gzip_page_is_asked_for_and_read_and_its_inflated_size_is_what_counts() {
    use std::io::Write;
    let page = "# TYPE requests_total counter\nrequests_total 7\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(page.as_bytes()).unwrap();
    let peer = Peer::start(Behaviour::Answer(
        200,
        vec!["Content-Encoding: gzip".into()],
        gz.finish().unwrap(),
    ));
    let client = reqwest::Client::builder().gzip(true).build().unwrap();
    let s = scrape_once(&client, &target(&peer.url("/metrics")), 1_800_000_000_000).await;
    assert_eq!(s.error, None);
    assert_eq!(value(&s.samples, "requests_total"), 7.0);
    let head = peer.requests()[0].head.to_ascii_lowercase();
    assert!(head.contains("accept-encoding: gzip"), "{head}");
    assert!(head.contains("accept: text/plain;version=0.0.4"), "{head}");

    // A small compressed answer that inflates past the limit: a zip bomb.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'#'; 64 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    peer.set(Behaviour::Answer(
        200,
        vec!["Content-Encoding: gzip".into()],
        bomb,
    ));
    let s = scrape_once(&client, &target(&peer.url("/metrics")), 1_800_000_000_000).await;
    assert_eq!(
        s.error.as_deref(),
        Some("the body exceeds body_size_limit (10485760 bytes)")
    );
}

#[tokio::test]
async fn exposition_timestamps_are_kept_and_those_far_ahead_dropped() {
    let now = 1_800_000_000_000i64;
    let page = format!(
        "stamped 1 {}\nplain 2\nahead 3 {}\n",
        now - 30_000,
        now + 3_600_000
    );
    let peer = Peer::start(Behaviour::Answer(200, vec![], page.into_bytes()));
    let s = scrape_once(&reqwest::Client::new(), &target(&peer.url("/m")), now).await;
    assert_eq!(s.error, None);
    assert_eq!(s.timed.len(), 1);
    assert_eq!(s.timed[0].0.get("__name__"), "stamped");
    assert_eq!((s.timed[0].1, s.timed[0].2), (now - 30_000, 1.0));
    assert_eq!(value(&s.samples, "plain"), 2.0);
    assert!(
        s.samples
            .iter()
            .all(|(l, _)| l.get("__name__") != "stamped")
    );
}

#[tokio::test]
async fn garbage_and_truncated_pages_fail_the_scrape_and_say_why() {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let cases: Vec<(Behaviour, &str)> = vec![
        (
            Behaviour::Garbage(b"\x00\x01 not http\r\n\r\n".to_vec()),
            "request failed",
        ),
        (
            Behaviour::Answer(200, vec![], b"ok 1\ntruncated{a=\"b".to_vec()),
            "line 2: unclosed label value",
        ),
        (
            Behaviour::Answer(200, vec![], vec![0xff, 0xfe, b' ', b'1']),
            "the body is not UTF-8",
        ),
        (Behaviour::Answer(503, vec![], b"busy".to_vec()), "HTTP 503"),
    ];
    for (behaviour, reason) in cases {
        let peer = Peer::start(behaviour.clone());
        let s = scrape_once(&client, &target(&peer.url("/metrics")), 1_800_000_000_000).await;
        let e = s.error.unwrap_or_default();
        assert!(e.starts_with(reason), "{behaviour:?}: {e}");
        assert_eq!(value(&s.samples, "up"), 0.0);
    }
}
