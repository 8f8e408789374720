// A thread of the engine's pool (threaded build only): instantiate the worker's module on the
// memory it shares, say so, then run the engine's parallel work (it never returns).
importScripts('./tiller-worker-mt.js');
self.onmessage = async (ev) => {
  self.onmessage = null;
  const [module, memory] = ev.data;
  try {
    await wasm_bindgen({ module_or_path: module, memory });
  } catch (e) {
    setTimeout(() => { throw e; });
    return;
  }
  postMessage('started');
  try {
    wasm_bindgen.tiller_thread_run();
  } catch (e) {
    // A panic in the engine's parallel work: the engine's thread cannot go on without this one.
    postMessage({ error: String(e && e.stack || e) });
  }
};
