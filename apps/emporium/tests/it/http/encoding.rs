//! Compression by `Accept-Encoding`, and the reference page's long-cached bundle.

use super::{fetch, header};
use crate::spawn_app;

fn decode(encoding: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match encoding {
        None => out.extend_from_slice(bytes),
        Some("gzip") => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("unexpected encoding {other}"),
    }
    out
}

/// Answers of 1 KiB or more come compressed as the client prefers (br on a tie), with
/// `Vary: Accept-Encoding`, and decompress to the same bytes; small ones come as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_compressed_by_accept_encoding() {
    let app = spawn_app().await;
    let (_, plain_headers, plain) = fetch(&app.http, "GET", "/openapi.json", &[]).await;
    assert_eq!(header(&plain_headers, "content-encoding"), None);
    assert!(
        plain.len() > 10_000,
        "the document is large: {}",
        plain.len()
    );
    let cases = [
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("gzip, deflate, br, zstd", Some("br")),
        ("br;q=0.1, gzip", Some("gzip")),
        ("identity", None),
        ("br;q=0, gzip;q=0", None),
    ];
    for (accept, expected) in cases {
        let (status, headers, bytes) = fetch(
            &app.http,
            "GET",
            "/openapi.json",
            &[("accept-encoding", accept)],
        )
        .await;
        assert_eq!(status, 200, "{accept}");
        let encoding = header(&headers, "content-encoding");
        assert_eq!(encoding, expected, "Accept-Encoding: {accept}");
        assert!(
            header(&headers, "vary").is_some_and(|v| v.contains("accept-encoding")),
            "{accept}: {headers:?}"
        );
        assert_eq!(decode(encoding, &bytes), plain, "{accept}");
        if expected.is_some() {
            assert!(
                bytes.len() * 3 < plain.len(),
                "{accept}: {} bytes",
                bytes.len()
            );
        }
    }
    let (_, small, _) = fetch(
        &app.http,
        "GET",
        "/health/live",
        &[("accept-encoding", "br, gzip")],
    )
    .await;
    assert_eq!(header(&small, "content-encoding"), None, "{small:?}");
}

/// `/docs` links its files with the bundle's hash; so linked, a file is compressed,
/// `immutable` for a year, and revalidated to `304` by its `ETag`; the page itself is
/// revalidated each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_bundle_is_compressed_and_cached_for_a_year() {
    let app = spawn_app().await;
    let (_, page_headers, page) = fetch(&app.http, "GET", "/docs", &[]).await;
    assert_eq!(
        header(&page_headers, "cache-control"),
        Some("public, no-cache")
    );
    let page = String::from_utf8(page).unwrap();
    let start = page
        .find("swagger-ui-bundle.js?v=")
        .expect("a versioned bundle link");
    let link = &page[start..start + page[start..].find('"').unwrap()];
    assert!(
        page.contains("src=\"./swagger-initializer.js\""),
        "generated, not versioned"
    );
    let path = format!("/docs/{link}");
    let (status, headers, bytes) = fetch(
        &app.http,
        "GET",
        &path,
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let plain = decode(Some("br"), &bytes);
    assert!(plain.len() > 1_000_000, "the real bundle: {}", plain.len());
    assert!(
        bytes.len() * 3 < plain.len(),
        "compressed to {} bytes",
        bytes.len()
    );
    let tag = header(&headers, "etag").expect("an ETag").to_owned();
    let (status, again, body) = fetch(&app.http, "GET", &path, &[("if-none-match", &tag)]).await;
    assert_eq!((status, body.len()), (304, 0));
    assert_eq!(header(&again, "etag"), Some(tag.as_str()));
    let (_, unversioned, _) =
        fetch(&app.http, "GET", "/docs/swagger-ui-bundle.js?v=old", &[]).await;
    assert_eq!(
        header(&unversioned, "cache-control"),
        Some("public, no-cache")
    );
}
