//! ipcall errors as Python exceptions.
//!
//! The classes are defined in Python (`ipcall/_errors.py`), where multiple
//! inheritance is natural (`Timeout` is also a `TimeoutError`, `IoError` an
//! `OSError`); this module instantiates them and fills in their attributes.

use ipcall::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

/// The module that defines the exception classes, imported on first use
/// (importing it at module init would be circular: `ipcall` imports us).
static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The Python class of each error kind: the core's name for it.
pub(crate) fn class_name(kind: ErrorKind) -> &'static str {
    kind.name()
}

/// Every error kind as (class name, code, number), from the core, so that a
/// test can check `ipcall._errors` defines exactly these classes.
#[pyfunction]
pub(crate) fn error_kinds() -> Vec<(&'static str, &'static str, u32)> {
    ErrorKind::all().iter().map(|k| (k.name(), k.code(), k.number())).collect()
}

/// A new instance of the class for `kind` with `message` (not raised yet).
fn instance<'py>(py: Python<'py>, kind: ErrorKind, message: &str) -> PyResult<Bound<'py, PyAny>> {
    let module = ERRORS_MODULE.get_or_try_init(py, || py.import("ipcall._errors").map(Bound::unbind))?;
    module.bind(py).getattr(class_name(kind))?.call1((message,))
}

/// The server name an error concerns, if it names one.
fn name_of(err: &Error) -> Option<&str> {
    match err {
        Error::Disconnected { name }
        | Error::NoReply { name }
        | Error::Remote { name, .. }
        | Error::Timeout { name }
        | Error::Closed { name }
        | Error::AddrInUse { name }
        | Error::NotFound { name }
        | Error::PermissionDenied { name }
        | Error::InvalidName { name, .. }
        | Error::Protocol { name, .. }
        | Error::Io { name, .. } => Some(name),
        Error::TooLarge { .. } => None,
    }
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let exc = instance(py, err.kind(), &err.to_string())?;
    if let Some(name) = name_of(err) {
        exc.setattr("name", name)?;
    }
    match err {
        Error::Remote { payload, .. } => exc.setattr("payload", PyBytes::new(py, payload))?,
        Error::TooLarge { size, max } => {
            exc.setattr("size", size)?;
            exc.setattr("max", max)?;
        }
        Error::InvalidName { reason, .. } => exc.setattr("reason", reason)?,
        Error::Protocol { reason, .. } => exc.setattr("reason", reason)?,
        Error::Io { source, .. } => {
            exc.setattr("errno", source.raw_os_error())?;
            // OSError.__str__ shows strerror once errno is set: keep the name in it.
            exc.setattr("strerror", err.to_string())?;
        }
        _ => {}
    }
    Ok(PyErr::from_value(exc))
}

/// The Python exception for an ipcall error. (If even building it fails,
/// e.g. out of memory, that failure is raised instead.)
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    build(py, &err).unwrap_or_else(|e| e)
}

/// Converts `Result<T, ipcall::Error>` into `PyResult<T>`.
pub(crate) trait ToPyResult<T> {
    /// Maps the error to its Python exception.
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> ToPyResult<T> for ipcall::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

/// An exception of `kind` with a message of ours, for states only the
/// Python face can reach (a request answered twice, a closed client).
pub(crate) fn new(py: Python<'_>, kind: ErrorKind, name: &str, message: &str) -> PyErr {
    let built = instance(py, kind, &format!("{name}: {message}")).and_then(|exc| {
        exc.setattr("name", name)?;
        Ok(PyErr::from_value(exc))
    });
    built.unwrap_or_else(|e| e)
}
