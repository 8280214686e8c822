//! Rust futures as asyncio futures, safe at interpreter exit.
//!
//! A future runs on this module's tokio runtime; its result is handed to the asyncio loop
//! that asked for it with `call_soon_threadsafe`, from a blocking thread (taking the GIL
//! never blocks a runtime worker). Cancelling the asyncio future aborts the Rust task.
//!
//! At exit (`atexit`, before the interpreter starts finalizing) `quiesce` closes the
//! bridge: no thread takes the GIL for a result after that, and it waits for the handoffs
//! in progress. Without it, a subscription still waiting when a script ends would complete
//! during finalization and abort the process ("PyGILState_Release ... finalizing"), which
//! pyo3-async-runtimes' bridge does.

use std::future::Future;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use pyo3::IntoPyObjectExt;
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// `asyncio.get_running_loop` and `settle`, looked up once rather than per call.
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SETTLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Handoffs in progress, and whether the bridge is closed.
static STATE: Mutex<(usize, bool)> = Mutex::new((0, false));
static SETTLED: Condvar = Condvar::new();

fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("cortex-bus")
            .enable_all()
            .build()
            .expect("a tokio runtime for cortex_bus")
    })
}

/// Runs `fut` on the runtime; returns a future of the running asyncio loop that gets its
/// result (or its exception).
pub fn spawn<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let get_running_loop = GET_RUNNING_LOOP.get_or_try_init(py, || {
        PyModule::import(py, "asyncio")?
            .getattr("get_running_loop")
            .map(Bound::unbind)
    })?;
    let event_loop = get_running_loop.bind(py).call0()?;
    let py_fut = event_loop.call_method0("create_future")?;
    let target = py_fut.clone().unbind();
    let event_loop = event_loop.unbind();
    let task = runtime().spawn(async move {
        let result = fut.await;
        let _ = tokio::task::spawn_blocking(move || deliver(event_loop, target, result)).await;
    });
    py_fut.call_method1("add_done_callback", (Canceller(task.abort_handle()),))?;
    Ok(py_fut)
}

fn deliver<T>(event_loop: Py<PyAny>, fut: Py<PyAny>, result: PyResult<T>)
where
    T: for<'a> IntoPyObject<'a>,
{
    {
        let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
        if s.1 {
            return; // the interpreter is going away: nobody waits for this
        }
        s.0 += 1;
    }
    let _ = Python::try_attach(|py| -> PyResult<()> {
        let (ok, value) = match result.and_then(|v| v.into_py_any(py)) {
            Ok(v) => (true, v),
            Err(e) => (false, e.into_value(py).into_any()),
        };
        let settle = SETTLE.get_or_try_init(py, || {
            wrap_pyfunction!(settle, py).map(|f| f.into_any().unbind())
        })?;
        // A closed loop refuses: its future is gone with it.
        event_loop
            .bind(py)
            .call_method1("call_soon_threadsafe", (settle, fut, ok, value))?;
        Ok(())
    });
    let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
    s.0 -= 1;
    if s.0 == 0 {
        SETTLED.notify_all();
    }
}

/// On the loop's thread: sets the result unless the future was cancelled meanwhile.
#[pyfunction]
fn settle(fut: &Bound<'_, PyAny>, ok: bool, value: Bound<'_, PyAny>) -> PyResult<()> {
    if fut.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    if ok {
        fut.call_method1("set_result", (value,))?;
    } else {
        fut.call_method1("set_exception", (value,))?;
    }
    Ok(())
}

/// The asyncio future's done callback: a cancelled future aborts its Rust task.
#[pyclass(frozen)]
struct Canceller(AbortHandle);

#[pymethods]
impl Canceller {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0("cancelled")?.is_truthy()? {
            self.0.abort();
        }
        Ok(())
    }
}

/// Closes the bridge (registered with `atexit`): later results are dropped without taking
/// the GIL, and the handoffs in progress are waited for (up to 2 s).
#[pyfunction]
pub fn quiesce(py: Python<'_>) {
    py.detach(|| {
        let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
        s.1 = true;
        let _ = SETTLED
            .wait_timeout_while(s, Duration::from_secs(2), |s| s.0 > 0)
            .map_err(|p| p.into_inner());
    });
}
