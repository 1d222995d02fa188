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
/// function, the `Request` objects, the fast paths of `recv()`, `for
/// await`, `callSync()` and `call()` (over `native`, the raw functions of
/// `requests.rs` and `client/natives.rs`), and the `util.inspect.custom`
/// methods.
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

  // Received requests (see requests.rs): the core request waits in a slot
  // of this thread's native table; the object holds the slot and its
  // generation and, copied when it is made (through `shared`, written by
  // the native call just before), what stays readable after the answer.
  // Small request bytes are in a shared pool ArrayBuffer, viewed as a
  // Buffer on first read of `data`.
  const shared = new ArrayBuffer(64)
  const F_DEADLINE = 0, F_NATS_ID = 1
  const U_SLOT = 0, U_GENERATION = 1, U_OFFSET = 2, U_LENGTH = 3, U_PID = 4, U_UID = 5, U_GID = 6
  const U_FLAGS = 7, U_STATE = 8, U_TOOK = 9, U_SETTLED = 10
  const OWN_BUFFER = 1, HAS_PID = 2, HAS_UID = 4, HAS_GID = 8, HAS_NATS_ID = 16, HAS_NAME = 32, HAS_DEADLINE = 64
  const doubles = new Float64Array(shared, 0, 2)
  const ints = new Uint32Array(shared, 16, 11)
  const { takeOrWait, reply, fail, close, cancelled, watch, peerName } = native
  const { callSync: rawCallSync, call: rawCall } = native
  // A request collected unanswered is closed: its caller gets NO_REPLY.
  // Most requests are answered in the turn that received them, so a new
  // request is only listed (`fresh`, strongly held) and registered with
  // the FinalizationRegistry — which costs more than the rest of making it
  // — only if still unanswered when the turn's handlers have run: a
  // microtask queued by a tick, itself queued by the first request of the
  // turn, runs after the microtasks already queued then (the handlers the
  // turn's settlements resumed). The held value is slot + generation * 2^24.
  const SLOTS = 2 ** 24
  const unanswered = new FinalizationRegistry((held) => close(held % SLOTS, Math.floor(held / SLOTS)))
  const fresh = []
  let sweepQueued = false
  const nextTick = process.nextTick
  const sweepSoon = () => queueMicrotask(sweep)
  function sweep() {
    sweepQueued = false
    for (let i = 0; i < fresh.length; i++) Request_.keep(fresh[i])
    fresh.length = 0
  }

  // Named `Request` in stack traces; below, `Request` is still the export.
  const Request_ = class Request {
    #slot
    #generation
    #state = 0 // 0 open, 1 answered, 2 answered after its caller gave up
    #flags
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
    #registered = false
    constructor(data) {
      const slot = ints[U_SLOT]
      const generation = ints[U_GENERATION]
      const flags = ints[U_FLAGS]
      this.#slot = slot
      this.#generation = generation
      this.#flags = flags
      if ((flags & OWN_BUFFER) !== 0) {
        this.#data = data
        this.#pool = undefined
      } else {
        this.#data = undefined
        this.#pool = data
      }
      this.#offset = ints[U_OFFSET]
      this.#length = ints[U_LENGTH]
      this.#deadline = (flags & HAS_DEADLINE) !== 0 ? doubles[F_DEADLINE] : null
      this.#pid = ints[U_PID]
      this.#uid = ints[U_UID]
      this.#gid = ints[U_GID]
      this.#natsId = (flags & HAS_NATS_ID) !== 0 ? doubles[F_NATS_ID] : undefined
      this.#name = (flags & HAS_NAME) !== 0 ? peerName(slot, generation) : undefined
      fresh.push(this)
      if (!sweepQueued) {
        sweepQueued = true
        nextTick(sweepSoon)
      }
    }
    // The sweep: registers `request` if it is still unanswered.
    static keep(request) {
      if (request.#state === 0) {
        request.#registered = true
        unanswered.register(request, request.#slot + request.#generation * SLOTS, request)
      }
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
      const flags = this.#flags
      const peer = {}
      if ((flags & HAS_PID) !== 0) peer.pid = this.#pid
      if ((flags & HAS_UID) !== 0) peer.uid = this.#uid
      if ((flags & HAS_GID) !== 0) peer.gid = this.#gid
      if ((flags & HAS_NATS_ID) !== 0) peer.natsClientId = this.#natsId
      if ((flags & HAS_NAME) !== 0) peer.name = this.#name
      return peer
    }
    get deadline() {
      return this.#deadline
    }
    get signal() {
      let controller = this.#abort
      if (controller === undefined) {
        controller = this.#abort = new AbortController()
        const state = this.#state
        if (state === 0 ? watch(this.#slot, this.#generation, controller) : state === 2) controller.abort()
      }
      return controller.signal
    }
    get cancelled() {
      return this.#state === 0 ? cancelled(this.#slot, this.#generation) : this.#state === 2
    }
    get answered() {
      return this.#state !== 0
    }
    reply(data) {
      ints[U_STATE] = 0
      try {
        reply(this.#slot, this.#generation, data)
      } finally {
        this.#answered()
      }
    }
    fail(payload) {
      ints[U_STATE] = 0
      try {
        fail(this.#slot, this.#generation, payload)
      } finally {
        this.#answered()
      }
    }
    close() {
      if (this.#state !== 0) return
      ints[U_STATE] = 0
      close(this.#slot, this.#generation)
      this.#answered()
    }
    #answered() {
      const state = ints[U_STATE]
      if (state !== 0) {
        this.#state = state
        if (this.#registered) unanswered.unregister(this)
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
  // The Promises of `call()` without options: their resolvers wait here
  // under a number (reused once settled) that the native call keeps, and
  // `settleCall` settles them (see client/natives.rs): how 0 rejects with
  // `value`, 1 resolves with it, 2 with a view of the pool `value` at
  // OFFSET, LENGTH.
  const callResolves = []
  const callRejects = []
  const freeCallSlots = []
  function settleCall(slot, how, value) {
    const resolve = callResolves[slot]
    const reject = callRejects[slot]
    callResolves[slot] = undefined
    callRejects[slot] = undefined
    freeCallSlots.push(slot)
    if (how === 2) resolve(Buffer.from(value, ints[U_OFFSET], ints[U_LENGTH]))
    else if (how === 1) resolve(value)
    else reject(value)
  }
  native.bind(shared, adoptRequest, performance.now(), settleCall)

  // `recv()` (without options) and `for await` steps: one native call
  // takes a request ready now — the object and a resolved Promise are
  // made here — or returns the Promise of one (see `takeOrWait`).
  // A server's or a client's number in this thread's native table (a
  // number of the other table would name the wrong object: each class
  // has its own method and key), asked once and kept on the object.
  const SERVER_ID = Symbol('ipcall server id')
  const CLIENT_ID = Symbol('ipcall client id')
  function idOf(object, key, method) {
    let id = object[key]
    if (id === undefined) {
      id = object[method]()
      Object.defineProperty(object, key, { value: id })
    }
    return id
  }
  function next(id, step) {
    ints[U_TOOK] = 0
    const taken = takeOrWait(id, step)
    if (ints[U_TOOK] === 0) return taken
    const request = new Request_(taken)
    return Promise.resolve(step ? { value: request, done: false } : request)
  }
  const nativeRecv = Server.prototype.recv
  Object.defineProperty(Server.prototype, 'recv', {
    value: function recv(options) {
      if (options === undefined || options === null) return next(idOf(this, SERVER_ID, '__ipcallId'), false)
      return nativeRecv.call(this, options)
    },
    writable: true,
    enumerable: true,
    configurable: true,
  })
  // `for await (const req of server)`: leaving the loop early does not
  // close the server.
  Object.defineProperty(Server.prototype, '__ipcallId', { enumerable: false })
  Object.defineProperty(Server.prototype, Symbol.asyncIterator, {
    value() {
      const id = idOf(this, SERVER_ID, '__ipcallId')
      return {
        next() { return next(id, true) },
        return(value) { return Promise.resolve({ value, done: true }) },
        [Symbol.asyncIterator]() { return this },
      }
    },
    writable: true,
    configurable: true,
  })

  // `callSync()` and `call()` without options: one raw native call by
  // the client's id (see client/natives.rs). A small reply of
  // `callSync()` comes back in the pool (TOOK set) and is viewed here;
  // `call()`'s Promise is made here and settled by `settleCall`.
  Object.defineProperty(Client.prototype, '__ipcallClientId', { enumerable: false })
  const nativeCallSync = Client.prototype.callSync
  const nativeCall = Client.prototype.call
  for (const [key, value] of [
    ['callSync', function callSync(data, options) {
      if (options !== undefined && options !== null) return nativeCallSync.call(this, data, options)
      ints[U_TOOK] = 0
      const reply = rawCallSync(idOf(this, CLIENT_ID, '__ipcallClientId'), data)
      return ints[U_TOOK] === 0 ? reply : Buffer.from(reply, ints[U_OFFSET], ints[U_LENGTH])
    }],
    ['call', function call(data, options) {
      if (options !== undefined && options !== null) return nativeCall.call(this, data, options)
      const id = idOf(this, CLIENT_ID, '__ipcallClientId')
      // The slot is taken only for a call left in flight: nothing settles
      // it before this returns (settlements come from the loop's
      // callbacks), so its resolvers are stored after the native call.
      const slot = freeCallSlots.length > 0 ? freeCallSlots[freeCallSlots.length - 1] : callResolves.length
      ints[U_SETTLED] = 0
      // Throws only before the call began: then nothing took the slot.
      const value = rawCall(id, data, slot)
      const settled = ints[U_SETTLED]
      if (settled === 3) return Promise.resolve(Buffer.from(value, ints[U_OFFSET], ints[U_LENGTH]))
      if (settled === 2) return Promise.resolve(value)
      if (settled === 1) return Promise.reject(value)
      if (slot !== callResolves.length) freeCallSlots.pop()
      return new Promise((resolve, reject) => {
        callResolves[slot] = resolve
        callRejects[slot] = reject
      })
    }],
  ]) {
    Object.defineProperty(Client.prototype, key, { value, writable: true, enumerable: true, configurable: true })
  }

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
