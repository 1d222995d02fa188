//! How ipcall's objects look from JavaScript: the `IpcallError` class every
//! ipcall error is an instance of, and `util.inspect` (`console.log`) output
//! for `Server`, `Client` and `Request`.
//!
//! napi-rs classes cannot extend `Error`, so `IpcallError` is a napi class
//! whose prototype chain is re-pointed at `Error` when the module loads (in
//! every JavaScript thread that loads it), and each error ipcall makes is
//! created as a plain `Error` and then given `IpcallError.prototype`, with
//! its stack captured again so that it starts `IpcallError: …`. Then
//! `err instanceof ipcall.IpcallError` and `err instanceof Error` both hold.

use napi::bindgen_prelude::{Env, FnArgs, Function, JsObjectValue, JsValue, Object, Unknown};
use napi_derive::napi;

/// What ipcall throws and rejects with: an `Error` with a `code` (see
/// `ErrorCode`); `'REMOTE'` errors carry `payload`, `'TOO_LARGE'` errors
/// `size` and `max`. Test with `err instanceof IpcallError`; ipcall creates
/// them, `new IpcallError()` is not for applications.
#[napi]
pub struct IpcallError {}

/// The property of the `IpcallError` constructor that holds the function
/// turning a fresh `Error` into an `IpcallError` (not enumerable).
const ADOPT: &str = "__ipcallAdopt";

/// Runs once per JavaScript thread when the addon loads, after napi-rs has
/// defined the classes on `exports`.
#[napi(module_exports)]
pub fn init(exports: Object<'_>, env: Env) -> napi::Result<()> {
    let setup: Function<'_, FnArgs<(Object<'_>, Unknown<'_>)>, ()> = env.run_script(SETUP)?;
    let natives = crate::requests::natives(&env)?;
    // SAFETY: (1) `natives` was just made in `env`, on this thread.
    let natives = unsafe { Unknown::from_raw_unchecked(env.raw(), natives) };
    setup.call((exports, natives).into())
}

/// `setup(exports, native)`: the prototype chain, the `name`, the adopt
/// function, the `Request` objects and the fast paths of `recv()` and
/// `for await` (over `native`, the raw functions of `requests.rs`), and the
/// `util.inspect.custom` methods.
const SETUP: &str = r#"(function setup(exports, native) {
  const { IpcallError, Server, Client, Request } = exports
  Object.setPrototypeOf(IpcallError.prototype, Error.prototype)
  Object.setPrototypeOf(IpcallError, Error)
  Object.defineProperty(IpcallError.prototype, 'name', { value: 'IpcallError', writable: true, configurable: true })
  function adopt(error) {
    Object.setPrototypeOf(error, IpcallError.prototype)
    if (typeof Error.captureStackTrace === 'function') Error.captureStackTrace(error, adopt)
  }
  Object.defineProperty(IpcallError, '__ipcallAdopt', { value: adopt })

  // Received requests (see requests.rs): the core request waits in this
  // thread's native table; the object holds its token and, copied when it
  // is made (through `info`, written by the native call just before), what
  // stays readable after the answer. Small request bytes are in a shared
  // pool ArrayBuffer, viewed as a Buffer on first read of `data`.
  const INFO_TOKEN = 0, INFO_OFFSET = 1, INFO_LENGTH = 2, INFO_DEADLINE = 3, INFO_PID = 4, INFO_UID = 5
  const INFO_GID = 6, INFO_NATS_ID = 7, INFO_HAS_NAME = 8, INFO_STATE = 9
  const info = new Float64Array(10)
  const { take, reply, fail, close, cancelled, watch, peerName } = native
  // A request collected unanswered is closed: its caller gets NO_REPLY.
  const unanswered = new FinalizationRegistry(close)
  const isNumber = (value) => value === value // not NaN

  class Request_ {
    #token
    #state = 0 // 0 open, 1 answered, 2 answered after its caller gave up
    #pool
    #offset
    #length
    #data
    #deadline
    #pid
    #uid
    #gid
    #natsId
    #name
    #abort = undefined
    constructor(data) {
      const token = info[INFO_TOKEN]
      this.#token = token
      const offset = info[INFO_OFFSET]
      if (offset < 0) {
        this.#data = data
        this.#pool = undefined
      } else {
        this.#data = undefined
        this.#pool = data
      }
      this.#offset = offset
      this.#length = info[INFO_LENGTH]
      const deadline = info[INFO_DEADLINE]
      this.#deadline = isNumber(deadline) ? deadline : null
      this.#pid = info[INFO_PID]
      this.#uid = info[INFO_UID]
      this.#gid = info[INFO_GID]
      this.#natsId = info[INFO_NATS_ID]
      this.#name = info[INFO_HAS_NAME] === 1 ? peerName(token) : undefined
      unanswered.register(this, token, this)
    }
    get data() {
      let data = this.#data
      if (data === undefined) {
        data = this.#data = Buffer.from(this.#pool, this.#offset, this.#length)
        this.#pool = undefined
      }
      return data
    }
    get peer() {
      const peer = {}
      if (isNumber(this.#pid)) peer.pid = this.#pid
      if (isNumber(this.#uid)) peer.uid = this.#uid
      if (isNumber(this.#gid)) peer.gid = this.#gid
      if (isNumber(this.#natsId)) peer.natsClientId = this.#natsId
      if (this.#name !== undefined) peer.name = this.#name
      return peer
    }
    get deadline() {
      return this.#deadline
    }
    get signal() {
      let controller = this.#abort
      if (controller === undefined) {
        controller = this.#abort = new AbortController()
        if (this.#state === 0 ? watch(this.#token, controller) : this.#state === 2) controller.abort()
      }
      return controller.signal
    }
    get cancelled() {
      return this.#state === 0 ? cancelled(this.#token) : this.#state === 2
    }
    get answered() {
      return this.#state !== 0
    }
    reply(data) {
      info[INFO_STATE] = 0
      try {
        reply(this.#token, data)
      } finally {
        this.#answered()
      }
    }
    fail(payload) {
      info[INFO_STATE] = 0
      try {
        fail(this.#token, payload)
      } finally {
        this.#answered()
      }
    }
    close() {
      if (this.#state !== 0) return
      info[INFO_STATE] = 0
      close(this.#token)
      this.#answered()
    }
    #answered() {
      const state = info[INFO_STATE]
      if (state !== 0) {
        this.#state = state
        unanswered.unregister(this)
      }
    }
  }
  // `ipcall.Request` (the native class) is what users see: `instanceof`,
  // `constructor` and its prototype's members.
  Object.setPrototypeOf(Request_.prototype, Request.prototype)
  for (const key of Object.getOwnPropertyNames(Request_.prototype)) {
    const descriptor = Object.getOwnPropertyDescriptor(Request_.prototype, key)
    if (key === 'constructor') {
      Object.defineProperty(Request_.prototype, key, { value: Request, writable: true, configurable: true })
    } else {
      descriptor.enumerable = true
      Object.defineProperty(Request.prototype, key, descriptor)
    }
  }
  function adoptRequest(data, step) {
    const request = new Request_(data)
    return step ? { value: request, done: false } : request
  }
  native.bind(info, adoptRequest, performance.now())

  // The fast path of `recv()` and `for await`: a request ready now is
  // taken by one native call (`take`) and settled in JavaScript; otherwise
  // (or after 64 in a row: the loop must turn) the native method waits.
  const ID = Symbol('ipcall server id')
  function serverId(server) {
    let id = server[ID]
    if (id === undefined) {
      id = server.__ipcallId()
      Object.defineProperty(server, ID, { value: id })
    }
    return id
  }
  const nativeRecv = Server.prototype.recv
  Object.defineProperty(Server.prototype, 'recv', {
    value: function recv(options) {
      if (options === undefined || options === null) {
        const id = serverId(this)
        let data
        try {
          data = take(id)
        } catch (error) {
          return Promise.reject(error)
        }
        if (data !== undefined) return Promise.resolve(new Request_(data))
      }
      return nativeRecv.call(this, options)
    },
    writable: true,
    enumerable: true,
    configurable: true,
  })
  // `for await (const req of server)`: leaving the loop early does not
  // close the server.
  Object.defineProperty(Server.prototype, '__ipcallNext', { enumerable: false })
  Object.defineProperty(Server.prototype, '__ipcallId', { enumerable: false })
  Object.defineProperty(Server.prototype, Symbol.asyncIterator, {
    value() {
      const server = this
      const id = serverId(server)
      return {
        next() {
          let data
          try {
            data = take(id)
          } catch (error) {
            return Promise.reject(error)
          }
          if (data !== undefined) return Promise.resolve({ value: new Request_(data), done: false })
          return server.__ipcallNext()
        },
        return(value) { return Promise.resolve({ value, done: true }) },
        [Symbol.asyncIterator]() { return this },
      }
    },
    writable: true,
    configurable: true,
  })

  const custom = Symbol.for('nodejs.util.inspect.custom')
  // Fields read through getters; one that throws (a request already
  // answered has no data to show) is left out.
  function show(object, className, fields, depth, options, inspect) {
    const shown = {}
    for (const field of fields) {
      try {
        shown[field] = object[field]
      } catch {}
    }
    if (depth < 0) return `${className} { … }`
    const body = inspect(shown, { ...options, depth: options.depth == null ? null : options.depth - 1 })
    return `${className} ${body}`
  }
  Object.defineProperty(Server.prototype, custom, {
    value(depth, options, inspect) { return show(this, 'Server', ['name'], depth, options, inspect) },
  })
  Object.defineProperty(Client.prototype, custom, {
    value(depth, options, inspect) { return show(this, 'Client', ['name'], depth, options, inspect) },
  })
  Object.defineProperty(Request.prototype, custom, {
    value(depth, options, inspect) { return show(this, 'Request', ['data', 'peer', 'answered'], depth, options, inspect) },
  })
})"#;

/// Gives `error` (a fresh `Error` of this thread) the `IpcallError`
/// prototype and a stack that names it. Without the class (the module's
/// setup did not run in this thread) the error stays a plain `Error`.
pub(crate) fn adopt(env: &Env, error: &Object<'_>) -> napi::Result<()> {
    let Some(constructor) = napi::bindgen_prelude::get_class_constructor("IpcallError\0") else {
        return Ok(());
    };
    let mut value = std::ptr::null_mut();
    // SAFETY: (1) `constructor` is a reference napi-rs created in this
    // thread's env for the class, and lives as long as that env; (2) `value`
    // is a valid out-pointer.
    let status = unsafe { napi::sys::napi_get_reference_value(env.raw(), constructor, &mut value) };
    if status != napi::sys::Status::napi_ok || value.is_null() {
        return Ok(());
    }
    // SAFETY: (3) `value` was just produced by napi for this env.
    let constructor = unsafe { Unknown::from_raw_unchecked(env.raw(), value) }.coerce_to_object()?;
    let adopt: Unknown<'_> = constructor.get_named_property(ADOPT)?;
    if adopt.get_type()? != napi::ValueType::Function {
        return Ok(());
    }
    // SAFETY: (4) its type was checked just above.
    let adopt: Function<'_, Unknown<'_>, ()> = unsafe { adopt.cast()? };
    adopt.call(error.to_unknown())
}
