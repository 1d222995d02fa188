// A typed tour of the API, checked by `tsc --noEmit` (test/typescript.test.js):
// the declarations in index.d.ts must describe what the package really does.
import { Server, Request, Client, IpcallError, connect, connectAsync, availableKinds, enableEvents, disableEvents, droppedEvents } from 'ipcall'
import type { ErrorCode, CallOptions, ServerOptions, Peer, EventChannel, IpcallEvent } from 'ipcall'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'

async function serve(server: Server): Promise<number> {
  let served = 0
  for await (const req of server) {
    const request: Request = req
    const data: Buffer = request.data
    const peer: Peer = request.peer
    const pid: number | undefined = peer.pid
    if (pid === undefined) request.fail('who are you?')
    else request.reply(Buffer.concat([Buffer.from('echo:'), data]))
    served += 1
  }
  return served
}

function codeOf(err: unknown): ErrorCode | undefined {
  // The class narrows: an IpcallError is an Error with the interface's fields.
  return err instanceof IpcallError ? err.code : undefined
}

function watchDrops(): () => void {
  const channel: EventChannel = 'ipcall:drop'
  const onDrop = (message: unknown): void => {
    const event = message as IpcallEvent
    if (event.reason !== 'client_left') console.warn(event.name, event.reason, event.pid, event.violation)
  }
  subscribe(channel, onDrop)
  enableEvents()
  return () => {
    unsubscribe(channel, onDrop)
    disableEvents()
    const lost: number = droppedEvents()
    if (lost > 0) console.warn(`${lost} ipcall events dropped`)
  }
}

export async function main(): Promise<void> {
  const unwatch = watchDrops()
  const options: ServerOptions = { maxMessageSize: 1 << 20, oneShot: false }
  const server: Server = Server.bindUnique('mem', options)
  const serving: Promise<number> = serve(server)
  const client: Client = connect(server.name, { maxMessageSize: 1 << 20 })
  const callOptions: CallOptions = { timeout: 1000 }
  const reply: Buffer = await client.call(new Uint8Array([1, 2, 3]), callOptions)
  const text: Buffer = await client.call('text')
  const view: Buffer = await client.call(new DataView(new ArrayBuffer(4)))
  try {
    await client.call(Buffer.from('x'), { timeout: 0 })
  } catch (err) {
    const code: ErrorCode | undefined = codeOf(err)
    if (code === 'REMOTE' && err instanceof IpcallError) console.log(err.payload?.toString(), err.message)
  }
  const later: Client = await connectAsync(server.name, { timeout: 100 })
  later.close()
  const kinds: string[] = availableKinds()
  const received: Request | null = server.tryRecv()
  received?.close()
  const next: Promise<Request> = server.recv({ timeout: 1 })
  next.catch(() => undefined)
  client.close()
  server.close()
  console.log(reply.length + text.length + view.length, kinds, await serving)
  unwatch()
}
