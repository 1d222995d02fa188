//! ipcall errors as JavaScript `Error`s with a `code` (DESIGN §2, §10).

use napi::bindgen_prelude::{Buffer, Env, JsValue, Object};
use napi::Status;

/// Builds the JavaScript `Error` for `err` and wraps it so that napi throws or
/// rejects with exactly that object.
///
/// The object carries `code` (`'DISCONNECTED'`, `'NO_REPLY'`, ... from
/// [`ipcall::ErrorKind::code`]); a `'REMOTE'` error also carries `payload` (a
/// Buffer with the server's error payload, byte for byte) and a `'TOO_LARGE'`
/// error `size` and `max` (bytes). If building the object fails, the napi
/// error that says why is returned instead.
pub(crate) fn to_js(env: &Env, err: ipcall::Error) -> napi::Error {
    build(env, err).unwrap_or_else(|e| e)
}

fn build(env: &Env, err: ipcall::Error) -> napi::Result<napi::Error> {
    let mut object = new_error(env, err.kind(), err.to_string())?;
    add_details(&mut object, err)?;
    Ok(napi::Error::from(object.to_unknown()))
}

/// Sets `payload` on a `REMOTE` error, `size` and `max` on a `TOO_LARGE` one.
fn add_details(object: &mut Object<'_>, err: ipcall::Error) -> napi::Result<()> {
    match err {
        ipcall::Error::Remote { payload, .. } => object.set("payload", Buffer::from(payload))?,
        ipcall::Error::TooLarge { size, max } => {
            // Both fit a JavaScript number exactly (limits are below 2^32).
            object.set("size", size as f64)?;
            object.set("max", max as f64)?;
        }
        _ => {}
    }
    Ok(())
}

/// The JavaScript `Error` value for `err` (see [`to_js`]), for settling a
/// Promise directly.
pub(crate) fn js_error_value(env: &Env, err: ipcall::Error) -> napi::Result<napi::sys::napi_value> {
    let message = err.to_string();
    js_error_value_with(env, err, message)
}

/// [`js_error_value`] with a message of the caller's choosing.
pub(crate) fn js_error_value_with(
    env: &Env,
    err: ipcall::Error,
    message: String,
) -> napi::Result<napi::sys::napi_value> {
    let mut object = new_error(env, err.kind(), message)?;
    add_details(&mut object, err)?;
    Ok(object.raw())
}

/// Like [`to_js`], with a message of the caller's choosing.
pub(crate) fn to_js_message(env: &Env, kind: ipcall::ErrorKind, message: String) -> napi::Error {
    new_error(env, kind, message).map(|object| napi::Error::from(object.to_unknown())).unwrap_or_else(|e| e)
}

fn new_error(env: &Env, kind: ipcall::ErrorKind, message: String) -> napi::Result<Object<'_>> {
    let mut object = env.create_error(napi::Error::new(Status::GenericFailure, message))?;
    crate::faces::adopt(env, &object)?;
    object.set("code", kind.code())?;
    Ok(object)
}

/// A JavaScript `TypeError` (code `'ERR_INVALID_ARG_TYPE'`, as Node's own
/// functions use) for an argument of the wrong type or value. These are
/// programming errors, outside ipcall's closed set of error kinds.
pub(crate) fn type_error(env: &Env, message: impl Into<String>) -> napi::Error {
    let build = || -> napi::Result<napi::Error> {
        let error = napi::JsTypeError::from(napi::Error::new(Status::InvalidArg, message.into()));
        let mut object = error.into_unknown(*env).coerce_to_object()?;
        object.set("code", "ERR_INVALID_ARG_TYPE")?;
        Ok(napi::Error::from(object.to_unknown()))
    };
    build().unwrap_or_else(|e| e)
}
