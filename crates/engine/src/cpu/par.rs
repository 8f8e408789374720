//! Data parallelism: rayon natively; in the page's threaded build (wasm with atomics) the
//! Web Worker pool of [`super::wasm_pool`] once it runs; else plain loops (a Web Worker alone
//! has one thread). Every parallel region splits work into tasks that own
//! disjoint outputs, so results are the same bit for bit on any number of threads.

/// Run `f` on every item, in parallel where threads exist.
pub fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        items.into_par_iter().for_each(f);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    {
        let mut items = items;
        if !super::wasm_pool::for_each(&mut items, &f) {
            items.into_iter().for_each(f);
        }
    }
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    items.into_iter().for_each(f);
}

/// Threads available to [`for_each`].
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    {
        super::wasm_pool::threads()
    }
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    {
        1
    }
}

/// Split `out` into consecutive pieces of the given lengths.
pub fn split_lengths<T>(mut out: &mut [T], lens: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let mut v = Vec::new();
    for n in lens {
        let (a, b) = out.split_at_mut(n);
        v.push(a);
        out = b;
    }
    v
}

/// `f` of every item, in order, in parallel where threads exist.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        items.into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        let slots: Vec<_> = items.into_iter().zip(out.iter_mut()).collect();
        for_each(slots, |(item, slot)| *slot = Some(f(item)));
        out.into_iter().flatten().collect()
    }
}
