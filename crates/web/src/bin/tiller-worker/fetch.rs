//! Download a URL into memory, reporting bytes as they arrive.

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

/// Download `url` (from the Cache API when it holds it), reporting bytes as they arrive;
/// returns the bytes and whether they came from the cache.
pub async fn fetch_cached(
    url: &str,
    progress: &mut dyn FnMut(f64, Option<f64>, bool),
) -> Result<(Vec<u8>, bool), String> {
    let c = cache().await;
    if let Some(c) = &c {
        if let Ok(hit) = JsFuture::from(c.match_with_str(url)).await {
            if let Ok(resp) = hit.dyn_into::<Response>() {
                let bytes = read_body(url, resp, &mut |d, t| progress(d, t, true)).await?;
                return Ok((bytes, true));
            }
        }
    }
    let bytes = fetch_bytes(url, &mut |d, t| progress(d, t, false)).await?;
    Ok((bytes, false))
}

/// Keep a model that loaded in the cache (never one that failed to load). Best effort: a full
/// disk or a private window only costs the next visit a download.
pub async fn remember(url: &str, bytes: &mut [u8]) {
    if let Some(c) = cache().await {
        if let Ok(resp) = Response::new_with_opt_u8_array(Some(bytes)) {
            let _ = JsFuture::from(c.put_with_str(url, &resp)).await;
        }
    }
}

pub async fn fetch_bytes(
    url: &str,
    progress: &mut dyn FnMut(f64, Option<f64>),
) -> Result<Vec<u8>, String> {
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let resp = JsFuture::from(global.fetch_with_str(url))
        .await
        .map_err(|e| format!("fetching {url}: {}", err(e)))?;
    let resp: Response =
        resp.dyn_into().map_err(|_| "fetch did not return a Response".to_string())?;
    read_body(url, resp, progress).await
}

async fn read_body(
    url: &str,
    resp: Response,
    progress: &mut dyn FnMut(f64, Option<f64>),
) -> Result<Vec<u8>, String> {
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
        if buf.len() as f64 - last > 1e6 {
            last = buf.len() as f64;
            progress(last, total);
        }
    }
    progress(buf.len() as f64, total);
    Ok(buf)
}
