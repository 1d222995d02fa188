//! Message bytes from JavaScript: a Buffer, any TypedArray, a DataView, an
//! ArrayBuffer, or a string (sent as UTF-8).

use std::ptr;

use napi::bindgen_prelude::{Buffer, FromNapiValue, ToNapiValue, TypeName, ValueType};
use napi::{sys, Env};

use crate::error::type_error;

/// The bytes of a message argument, borrowed from the JavaScript value where
/// it holds raw memory (no copy), owned for a string.
///
/// Only valid for the duration of the native call that received it: the
/// borrowed memory belongs to a JavaScript object that the call's handle
/// scope keeps alive, and no JavaScript runs (so nothing can detach or
/// resize it) until the call returns. The raw pointer keeps `Bytes` neither
/// `Send` nor storable across calls, which enforces that.
pub enum Bytes {
    /// Memory of an ArrayBuffer (or a view of one).
    Borrowed {
        /// Start of the bytes; null only when `len` is 0.
        data: *const u8,
        /// Number of bytes.
        len: usize,
    },
    /// A string's UTF-8 encoding.
    Owned(Vec<u8>),
}

impl Bytes {
    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed { len: 0, .. } => &[],
            // SAFETY: (1) `data` points to `len` readable bytes of an
            // ArrayBuffer's backing store, as Node-API reported them; (2) the
            // JavaScript value owning them is alive for the whole native call
            // (see the type's documentation) and `Bytes` cannot outlive it;
            // (3) no JavaScript runs during the call, so the buffer cannot be
            // detached or resized while this slice exists.
            Bytes::Borrowed { data, len } => unsafe { std::slice::from_raw_parts(*data, *len) },
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// Size in bytes of one element of a TypedArray of Node-API type `kind`.
fn element_size(kind: sys::napi_typedarray_type) -> Option<usize> {
    use sys::TypedarrayType as T;
    Some(match kind {
        T::int8_array | T::uint8_array | T::uint8_clamped_array => 1,
        T::int16_array | T::uint16_array => 2,
        T::int32_array | T::uint32_array | T::float32_array => 4,
        T::float64_array => 8,
        // BigInt64Array and BigUint64Array (napi6 constants, not enabled here).
        9 | 10 => 8,
        // Float16Array, in newer engines.
        11 => 2,
        _ => return None,
    })
}

fn check(env: sys::napi_env, status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(type_error(&Env::from_raw(env), format!("could not read the message bytes ({what})")))
    }
}

/// `value`'s bytes if it is a TypedArray (a Buffer among them); `None`
/// for any other value.
///
/// # Safety
/// `env` and `value` come from Node-API for the current native call.
unsafe fn typed_array(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Option<Bytes>> {
    let mut kind = 0;
    let mut count = 0usize;
    let mut data: *mut std::ffi::c_void = ptr::null_mut();
    // SAFETY: (1) per the contract; (2) the out-pointers are live locals,
    // or null where Node-API allows it; (3) a value of another type is
    // refused with `napi_invalid_arg` (Node-API checks the type first and
    // throws nothing).
    let status = unsafe {
        sys::napi_get_typedarray_info(env, value, &mut kind, &mut count, &mut data, ptr::null_mut(), ptr::null_mut())
    };
    if status == sys::Status::napi_invalid_arg {
        return Ok(None);
    }
    check(env, status, "typedarray_info")?;
    let size =
        element_size(kind).ok_or_else(|| type_error(&Env::from_raw(env), "unsupported TypedArray element type"))?;
    // A detached or empty buffer: no memory, no bytes.
    let len = if data.is_null() { 0 } else { count * size };
    Ok(Some(Bytes::Borrowed { data: data.cast_const().cast(), len }))
}

impl FromNapiValue for Bytes {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        // A TypedArray (a Buffer) first, as most messages are, in one call:
        // `napi_get_typedarray_info` checks the type itself and reports
        // anything else as `napi_invalid_arg`, without an exception.
        // SAFETY: (1) `env` and `value` come from napi for the current call;
        // (2) every out-pointer is a live local or null where Node-API allows it.
        if let Some(bytes) = unsafe { typed_array(env, value) }? {
            return Ok(bytes);
        }
        let mut value_type = 0;
        // SAFETY: (1) as above.
        check(env, unsafe { sys::napi_typeof(env, value, &mut value_type) }, "typeof")?;
        if value_type == sys::ValueType::napi_string {
            // SAFETY: (1) as above; (2) `value` is a string, as just checked.
            let text = unsafe { String::from_napi_value(env, value) }?;
            return Ok(Bytes::Owned(text.into_bytes()));
        }
        let mut data: *mut std::ffi::c_void = ptr::null_mut();
        let mut len = 0usize;
        let mut is = false;
        // SAFETY (all calls below): (1) `env` and `value` come from napi for
        // the current call; (2) every out-pointer is a live local; (3) the
        // `*_info` functions are called only after the matching `napi_is_*`
        // said `value` has that type.
        check(env, unsafe { sys::napi_is_dataview(env, value, &mut is) }, "is_dataview")?;
        if is {
            let status = unsafe {
                sys::napi_get_dataview_info(env, value, &mut len, &mut data, ptr::null_mut(), ptr::null_mut())
            };
            check(env, status, "dataview_info")?;
        } else {
            check(env, unsafe { sys::napi_is_arraybuffer(env, value, &mut is) }, "is_arraybuffer")?;
            if !is {
                return Err(type_error(
                    &Env::from_raw(env),
                    "a message must be a Buffer, a TypedArray, a DataView, an ArrayBuffer or a string",
                ));
            }
            check(env, unsafe { sys::napi_get_arraybuffer_info(env, value, &mut data, &mut len) }, "arraybuffer_info")?;
        }
        if data.is_null() {
            // A detached or empty buffer: no memory, no bytes.
            len = 0;
        }
        Ok(Bytes::Borrowed { data: data.cast_const().cast(), len })
    }
}

impl TypeName for Bytes {
    fn type_name() -> &'static str {
        "Bytes"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

/// Messages up to this size reach JavaScript as a copy in a Buffer V8
/// allocates; larger ones as an external Buffer over the Rust `Vec` (no
/// copy). An external Buffer costs a boxed finalizer, a backing-store
/// registration and a finalizer call at garbage collection — more than
/// copying a few KiB, which is what most messages are.
const COPY_MAX: usize = 4096;

/// `data` as a new JavaScript Buffer (copied if small, see [`COPY_MAX`]).
///
/// # Safety
/// `env` is live and this is its JavaScript thread, inside a handle scope.
pub(crate) unsafe fn buffer_value(env: sys::napi_env, data: Vec<u8>) -> napi::Result<sys::napi_value> {
    if data.is_empty() || data.len() > COPY_MAX {
        // SAFETY: (1) per the contract.
        return unsafe { Buffer::to_napi_value(env, Buffer::from(data)) };
    }
    let mut value = ptr::null_mut();
    // SAFETY: (1) per the contract; (2) `data` holds `len` readable bytes,
    // copied before the call returns; (3) the out-pointers are live locals.
    let status =
        unsafe { sys::napi_create_buffer_copy(env, data.len(), data.as_ptr().cast(), ptr::null_mut(), &mut value) };
    if status != sys::Status::napi_ok {
        return Err(napi::Error::new(napi::Status::from(status), "could not create a Buffer"));
    }
    Ok(value)
}
