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
