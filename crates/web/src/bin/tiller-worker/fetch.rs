//! Download a URL into memory, reporting bytes as they arrive and hashing them as they stream;
//! keep a model in the Cache API with its sha256, so a cached model opens without re-hashing.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, Response, WorkerGlobalScope};

fn err(v: JsValue) -> String {
    v.as_string()
        .or_else(|| v.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{v:?}"))
}

/// The Cache API store for models: a second visit reads the model from here.
const CACHE: &str = "tiller-models-v1";

async fn cache() -> Option<web_sys::Cache> {
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let storage = global.caches().ok()?;
    JsFuture::from(storage.open(CACHE)).await.ok()?.dyn_into().ok()
}

/// The header a cached model's sha256 (hex) is kept in, beside its bytes.
const SHA_HEADER: &str = "x-tiller-sha256";

/// A model file in memory, with where it came from and its sha256 (hex).
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// Read from the Cache API (not downloaded).
    pub cached: bool,
    pub sha256: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Download `url` (from the Cache API when it holds it), reporting bytes as they arrive. A
/// download is hashed as it streams; a cached copy carries the hash it was stored with (an
/// entry stored without one is hashed once read).
pub async fn fetch_cached(
    url: &str,
    progress: &mut dyn FnMut(f64, Option<f64>, bool),
) -> Result<Fetched, String> {
    let c = cache().await;
    if let Some(c) = &c {
        if let Ok(hit) = JsFuture::from(c.match_with_str(url)).await {
            if let Ok(resp) = hit.dyn_into::<Response>() {
                let stored = resp
                    .headers()
                    .get(SHA_HEADER)
                    .ok()
                    .flatten()
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                let hash = stored.is_none();
                let (bytes, digest) =
                    read_body(url, resp, hash, &mut |d, t| progress(d, t, true)).await?;
                let sha256 = stored.or(digest).unwrap_or_default();
                return Ok(Fetched { bytes, cached: true, sha256 });
            }
        }
    }
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let resp = JsFuture::from(global.fetch_with_str(url))
        .await
        .map_err(|e| format!("fetching {url}: {}", err(e)))?;
    let resp: Response =
        resp.dyn_into().map_err(|_| "fetch did not return a Response".to_string())?;
    let (bytes, digest) = read_body(url, resp, true, &mut |d, t| progress(d, t, false)).await?;
    Ok(Fetched { bytes, cached: false, sha256: digest.unwrap_or_default() })
}

/// Keep a model that loaded in the cache (never one that failed to load), with its sha256.
/// Best effort: a full disk or a private window only costs the next visit a download.
pub async fn remember(url: &str, bytes: &mut [u8], sha256: &str) {
    if let Some(c) = cache().await {
        let init = web_sys::ResponseInit::new();
        if let Ok(h) = web_sys::Headers::new() {
            let _ = h.set(SHA_HEADER, sha256);
            let _ = h.set("content-length", &bytes.len().to_string());
            init.set_headers(&h);
        }
        if let Ok(resp) = Response::new_with_opt_u8_array_and_init(Some(bytes), &init) {
            let _ = JsFuture::from(c.put_with_str(url, &resp)).await;
        }
    }
}

/// Drop a cached model that no longer opens (a damaged entry), so the next visit downloads it.
pub async fn forget(url: &str) {
    if let Some(c) = cache().await {
        let _ = JsFuture::from(c.delete_with_str(url)).await;
    }
}

/// The body, and its sha256 when `hash` (computed chunk by chunk as it arrives).
async fn read_body(
    url: &str,
    resp: Response,
    hash: bool,
    progress: &mut dyn FnMut(f64, Option<f64>),
) -> Result<(Vec<u8>, Option<String>), String> {
    use sha2::Digest;
    let mut hasher = hash.then(sha2::Sha256::new);
    if !resp.ok() {
        return Err(format!("fetching {url}: HTTP {} {}", resp.status(), resp.status_text()));
    }
    let total =
        resp.headers().get("content-length").ok().flatten().and_then(|s| s.parse::<f64>().ok());
    let body = resp.body().ok_or_else(|| format!("{url}: empty response body"))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut buf = Vec::with_capacity(total.unwrap_or(0.0).min(4e9) as usize);
    let mut last = 0.0;
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("reading {url}: {}", err(e)))?;
        if Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            break;
        }
        let value = Reflect::get(&chunk, &"value".into()).map_err(err)?;
        let arr: Uint8Array = value.unchecked_into();
        let start = buf.len();
        buf.resize(start + arr.length() as usize, 0);
        arr.copy_to(&mut buf[start..]);
        if let Some(h) = &mut hasher {
            h.update(&buf[start..]);
        }
        if buf.len() as f64 - last > 1e6 {
            last = buf.len() as f64;
            progress(last, total);
        }
    }
    progress(buf.len() as f64, total);
    Ok((buf, hasher.map(|h| hex(&h.finalize()))))
}
