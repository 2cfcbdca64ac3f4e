//! Arbitrary values of arbitrary WIT types through a real link and back: what comes back
//! equals what was sent, and nothing panics. See the crate doc for how.

#![no_main]

use libfuzzer_sys::fuzz_target;
use membrane_fuzz::{EchoApp, Ty};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Compiling two components per input would be most of the time; types repeat, so the
/// apps are kept (a bounded number of them).
fn apps() -> &'static Mutex<HashMap<String, &'static EchoApp>> {
    static APPS: OnceLock<Mutex<HashMap<String, &'static EchoApp>>> = OnceLock::new();
    APPS.get_or_init(Mutex::default)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(ty) = Ty::arbitrary(&mut u, 3) else { return };
    let Ok(value) = ty.value(&mut u) else { return };
    let key = format!("{ty:?}");
    let app = {
        let mut apps = apps().lock().unwrap();
        if apps.len() > 256 {
            apps.clear();
        }
        match apps.get(&key) {
            Some(app) => *app,
            None => {
                let app: &'static EchoApp =
                    Box::leak(Box::new(EchoApp::new(&ty).unwrap_or_else(|e| panic!("{ty:?}: {e}"))));
                apps.insert(key, app);
                app
            }
        }
    };
    let back = runtime().block_on(app.round_trip(value.clone())).unwrap_or_else(|e| panic!("{ty:?} {value:?}: {e}"));
    assert_eq!(back, value, "{ty:?}");
});
