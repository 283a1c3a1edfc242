//! Fetch the model with progress, keeping it in the browser's Cache Storage so that a second visit
//! starts without downloading.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response};

/// Name of the cache; bump it when the model file changes.
const CACHE: &str = "sinkscope-models-v1";

fn js_err(what: &str, e: JsValue) -> String {
    let detail = e.as_string().or_else(|| Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string())).unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {detail}")
}

async fn open_cache() -> Option<Cache> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().dyn_into().ok()?;
    let caches = global.caches().ok()?;
    JsFuture::from(caches.open(CACHE)).await.ok()?.dyn_into().ok()
}

/// Remove a cached copy (after it proved unreadable).
pub async fn forget(url: &str) {
    if let Some(cache) = open_cache().await {
        let _ = JsFuture::from(cache.delete_with_str(url)).await;
    }
}

/// The bytes of `url`, from Cache Storage when present, else downloaded (and then cached).
/// `progress(loaded, total, from_cache)` is called as bytes arrive.
pub async fn fetch_cached(url: &str, progress: impl Fn(f64, f64, bool)) -> Result<Vec<u8>, String> {
    let cache = open_cache().await;
    if let Some(cache) = &cache {
        if let Ok(hit) = JsFuture::from(cache.match_with_str(url)).await {
            if let Ok(resp) = hit.dyn_into::<Response>() {
                if let Ok(bytes) = read_body(&resp, &progress, true).await {
                    return Ok(bytes);
                }
            }
        }
    }
    let global: web_sys::WorkerGlobalScope = js_sys::global().dyn_into().map_err(|_| "not running in a worker".to_string())?;
    let resp: Response = JsFuture::from(global.fetch_with_str(url))
        .await
        .map_err(|e| js_err("the model could not be downloaded (network error)", e))?
        .dyn_into()
        .map_err(|_| "the model download returned no response".to_string())?;
    if !resp.ok() {
        return Err(format!("the model could not be downloaded: HTTP {} {}", resp.status(), resp.status_text()));
    }
    let for_cache = resp.clone().map_err(|e| js_err("cannot copy the response", e))?;
    let bytes = read_body(&resp, &progress, false).await?;
    if let Some(cache) = &cache {
        // Caching is an optimisation: a full or refused cache must not stop the page.
        let _ = JsFuture::from(cache.put_with_str(url, &for_cache)).await;
    }
    Ok(bytes)
}

async fn read_body(resp: &Response, progress: &impl Fn(f64, f64, bool), cached: bool) -> Result<Vec<u8>, String> {
    let total = resp.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let body = resp.body().ok_or("the model response has no body")?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().dyn_into().map_err(|_| "cannot read the model stream".to_string())?;
    // The header is outside data: reserve what it says only if memory allows, else grow as bytes come.
    let mut bytes: Vec<u8> = Vec::new();
    let _ = bytes.try_reserve_exact(total.min(4e9) as usize);
    let mut last = 0.0;
    progress(0.0, total, cached);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| js_err("the model download broke off", e))?;
        let done = Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true);
        if done {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into()).map_err(|e| js_err("bad chunk", e))?.dyn_into().map_err(|_| "bad chunk".to_string())?;
        let start = bytes.len();
        bytes.try_reserve(value.length() as usize).map_err(|_| format!("out of memory after {} MB of the model: this browser tab cannot hold it", start >> 20))?;
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        let loaded = bytes.len() as f64;
        if loaded - last >= 1_000_000.0 || (total > 0.0 && loaded >= total) {
            progress(loaded, total, cached);
            last = loaded;
        }
    }
    progress(bytes.len() as f64, total.max(bytes.len() as f64), cached);
    Ok(bytes)
}
