import ArgumentParser
import CZeroMQ
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Warren
import WarrenCLI

/// `warren-bench peer`: one peer of `warren-bench compare` on a system other than Warren's
/// overlay. It speaks `warren node`'s stdin/stdout protocol, so the comparison's driver treats
/// all three systems alike:
///   stdout: {"event":"ready",…} once it can send and receive, then
///           {"sender":B64,"recipient":B64,"message":{…}} per delivered message;
///   stdin:  {"to":"<base64 public key>","message":{…canonical JSON…}} per line.
/// It exits at the end of stdin (so it never outlives its driver) and on SIGTERM.
struct BenchPeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "One peer of `warren-bench compare` on NATS or raw ZeroMQ (JSON lines like warren node).",
        discussion: """
        nats: connects to --nats HOST:PORT, subscribes to the subject warren.<hex of its public \
        key>, seals each stdin message with Warren's envelope codec and publishes it to the \
        recipient's subject; opens what arrives and prints it.
        zmq: binds an XPUB on --listen and connects a SUB to every --peer, subscribed to its own \
        public key; sends [recipient key][sender key ‖ protobuf Message] with no de-dup, TTL or \
        crypto; prints ready once every --peer's SUB has subscribed.
        """,
        shouldDisplay: false)

    enum System: String, ExpressibleByArgument, CaseIterable { case nats, zmq }

    @Option(help: "nats or zmq.") var system: System
    @Option(name: .long, help: "File holding this peer's private key (base64).") var keyFile: String
    @Option(name: .long, help: ArgumentHelp("nats: the server.", valueName: "HOST:PORT")) var nats: String?
    @Option(name: .long, help: "zmq: endpoint to bind the PUB on, tcp://HOST:PORT.") var listen: String?
    @Option(name: .long, help: "zmq: another peer's PUB endpoint (repeatable).") var peer: [String] = []
    @Option(name: .long, help: "Seconds to wait for the connection / the other peers' subscriptions.") var readyTimeout: Double = 30

    func validate() throws {
        switch system {
        case .nats: guard nats != nil else { throw ValidationError("--system nats needs --nats HOST:PORT") }
        case .zmq: guard listen?.hasPrefix("tcp://") == true else { throw ValidationError("--system zmq needs --listen tcp://HOST:PORT") }
        }
    }

    func run() throws {
        let key = PrivateKey(try readKeyFile(keyFile))
        switch system {
        case .nats: try runNATS(key)
        case .zmq: try runZMQ(key)
        }
    }

    // MARK: NATS

    func runNATS(_ key: PrivateKey) throws {
        guard let nats, let hp = try? HostPort(parsing: nats, for: .dial), let port = hp.port else {
            throw ValidationError("--nats must be HOST:PORT")
        }
        let host = hp.host
        let (client, handshakeReader) = try NATSClient.connect(
            host: host, port: port, name: "warren-peer-\(key.publicKey.base64.prefix(8))",
            subject: natsSubject(key.publicKey), timeout: .seconds(readyTimeout))
        let reader = UnsafeSendable(handshakeReader)
        Output.line("{\"event\":\"ready\",\"endpoint\":\"nats://\(nats)\",\"public_key\":\"\(key.publicKey.base64)\"}")
        let t = Thread {
            var r = reader.value
            do {
                while true {
                    let c = try r.next { payload in
                        do {
                            let (pair, msg) = try EnvelopeCodec.shared.open(payload.bindMemory(to: UInt8.self), with: key)
                            Output.line(try jsonLine(sender: pair.theirs, recipient: pair.ours, message: msg))
                        } catch {
                            Output.error("dropped an envelope that does not open: \(error)")
                        }
                    }
                    switch c {
                    case .ping: client.pong()
                    case .error(let e): Output.error("nats-server: \(e)")
                    default: break
                    }
                }
            } catch {
                Output.error("\(error)"); Glibc.exit(1)
            }
        }
        t.name = "nats-reader"
        t.start()
        var subjects: [Key: [UInt8]] = [:]
        readPublishLines { recipient, msg in
            let subject = subjects[recipient] ?? Array(natsSubject(recipient).utf8)
            subjects[recipient] = subject
            client.publish(subject: subject, payload: try EnvelopeCodec.shared.sealBytes(msg, from: key, to: recipient))
        }
    }

    // MARK: Raw ZeroMQ

    func runZMQ(_ key: PrivateKey) throws {
        let ctx = ZMQContext.shared.handle
        guard let xpub = zmq_socket(ctx, ZMQ_XPUB), let sub = zmq_socket(ctx, ZMQ_SUB) else { throw ZMQError("zmq_socket") }
        var hwm: Int32 = 100_000, zero: Int32 = 0, one: Int32 = 1
        zmq_setsockopt(xpub, ZMQ_SNDHWM, &hwm, 4); zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, 4)
        zmq_setsockopt(xpub, ZMQ_LINGER, &zero, 4); zmq_setsockopt(sub, ZMQ_LINGER, &zero, 4)
        // Refuse rather than silently drop at the high-water mark; the sender then retries.
        zmq_setsockopt(xpub, ZMQ_XPUB_NODROP, &one, 4)
        guard zmq_bind(xpub, listen!) == 0 else { throw ValidationError("cannot listen on \(listen!): \(ZMQError("zmq_bind"))") }
        let own = key.publicKey.bytes
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, own, own.count)
        for p in peer where zmq_connect(sub, p) != 0 { throw ValidationError("--peer \(p): \(ZMQError("zmq_connect"))") }

        // Ready once every other peer's SUB has subscribed to our PUB: before that, what we send
        // to it would be dropped (ZeroMQ's slow joiner).
        var tmo: Int32 = 100
        zmq_setsockopt(xpub, ZMQ_RCVTIMEO, &tmo, 4)
        var seen = Set<[UInt8]>()
        var scratch = [UInt8](repeating: 0, count: 64)
        let deadline = monotonicNanos() + UInt64(readyTimeout * 1e9)
        while seen.count < peer.count {
            let n = zmq_recv(xpub, &scratch, 64, 0)
            if n == 33 && scratch[0] == 1 { seen.insert(Array(scratch[1..<33])) }
            if monotonicNanos() > deadline {
                throw ValidationError("only \(seen.count) of \(peer.count) peers subscribed within \(readyTimeout) s")
            }
        }
        Output.line("{\"event\":\"ready\",\"endpoint\":\(jsonString(listen!)),\"public_key\":\"\(key.publicKey.base64)\"}")

        let receiver = UnsafeSendable(sub)
        let me = key.publicKey
        let t = Thread {
            let s = receiver.value
            var msg = zmq_msg_t()
            var part = 0
            while true {
                zmq_msg_init(&msg)
                if zmq_msg_recv(&msg, s, 0) < 0 {
                    zmq_msg_close(&msg)
                    if zmq_errno() == EINTR { continue }
                    Output.error("zmq receive: \(ZMQError("zmq_msg_recv"))"); Glibc.exit(1)
                }
                let more = zmq_msg_more(&msg) != 0
                if part == 1 {
                    let size = zmq_msg_size(&msg)
                    let body = UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: size)
                    if size >= 32, let sender = try? Key(bytes: body.prefix(32)),
                       let m = try? SignalingMessage(serializedBytes: Array(body.dropFirst(32))),
                       let line = try? jsonLine(sender: sender, recipient: me, message: m) {
                        Output.line(line)
                    } else {
                        Output.error("dropped a malformed message (\(size) bytes)")
                    }
                }
                zmq_msg_close(&msg)
                part = more ? part + 1 : 0
            }
        }
        t.name = "zmq-receiver"
        t.start()
        readPublishLines { recipient, msg in
            var body = own
            body.append(contentsOf: try msg.serializedBytes() as [UInt8])
            let topic = recipient.bytes
            while zmq_send(xpub, topic, 32, ZMQ_SNDMORE) < 0 {
                guard zmq_errno() == EAGAIN || zmq_errno() == EINTR else { throw ZMQError("zmq_send") }
                usleep(50)   // at the high-water mark: wait for the queue to drain
            }
            // Multi-part messages are atomic: once the first part is queued the second is too.
            zmq_send(xpub, body, body.count, 0)
        }
    }

    // MARK: stdin

    /// Reads `{"to":…,"message":…}` lines until the end of stdin, then exits the process.
    func readPublishLines(_ publish: (Key, SignalingMessage) throws -> Void) -> Never {
        var n = 0
        while let line = readLine() {
            n += 1
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            do {
                let (to, msg) = try parsePublishLine(line)
                try publish(to, msg)
            } catch {
                Output.error("stdin line \(n): \(error)")
            }
        }
        Glibc.exit(0)
    }
}

/// The NATS subject a peer listens on: `warren.` and the hex of its public key.
func natsSubject(_ key: Key) -> String {
    "warren." + key.bytes.map { String(format: "%02x", $0) }.joined()
}

/// Parses a `warren node` input line: {"to":"<base64 public key>","message":{…}}.
func parsePublishLine(_ line: String) throws -> (Key, SignalingMessage) {
    guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw ValidationError("not a JSON object")
    }
    guard let to = obj["to"] as? String else { throw ValidationError("missing \"to\" (a base64 public key)") }
    guard let m = obj["message"], JSONSerialization.isValidJSONObject(m) else { throw ValidationError("missing \"message\" object") }
    let recipient: Key
    do { recipient = try Key(base64: to) } catch { throw ValidationError("\"to\": \(error)") }
    do {
        return (recipient, try SignalingMessage(jsonUTF8Data: try JSONSerialization.data(withJSONObject: m)))
    } catch {
        throw ValidationError("\"message\": \(error)")
    }
}
