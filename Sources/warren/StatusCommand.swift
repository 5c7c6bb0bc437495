import ArgumentParser
import Foundation
import WarrenCLI

/// Where a client command finds the node: its control socket (default), or `--metrics`.
struct NodeAddress: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The node's control socket (default: $WARREN_CONTROL, else $XDG_RUNTIME_DIR/warren.sock, else /run/warren/warren.sock).", valueName: "PATH")) var control: String?

    var path: String { control ?? ControlSocket.defaultPath }

    func request(_ object: [String: Any]) throws -> [String: Any] {
        try ControlSocket.request(object, path: path)
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running node's neighbours and counters.",
        discussion: """
        Asks the node through its control socket; --metrics HOST:PORT asks its metrics server \
        instead. Example: warren status   (or: warren status --metrics 127.0.0.1:9100)
        """)
    @OptionGroup var node: NodeAddress
    @Option(name: .long, help: ArgumentHelp("Ask the node's --metrics address (/status) instead of its control socket.", valueName: "HOST:PORT")) var metrics: String?
    @Flag(name: .long, help: "Print the raw JSON.") var json = false

    func run() throws {
        let obj: [String: Any]
        if let metrics {
            let body: String
            do { body = try httpGet(metrics, path: "/status") } catch { throw RuntimeError("\(error)") }
            guard let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
                throw RuntimeError("unexpected /status reply: \(body.prefix(200))")
            }
            obj = o
        } else {
            obj = try node.request(["command": "status"])
        }
        if json { return Output.line(jsonText(obj)) }
        let neighbours = (obj["neighbours"] as? [[String: Any]]) ?? []
        let known = (obj["known_endpoints"] as? [String]) ?? []
        var lines = ["node \(obj["endpoint"] ?? "?") (\(obj["node"] ?? "?"))"]
        if let k = obj["public_key"] { lines.append("  public key \(k)") }
        lines.append("  \(neighbours.count) neighbours, \(known.count) known endpoints, \(obj["dedup_entries"] ?? 0) ids in the de-dup cache")
        if let b = obj["backlinks"] as? [String: Any], (b["carried"] as? Int ?? 0) + (b["open"] as? Int ?? 0) > 0 {
            // docs/PROTOCOL.md §1: carried = neighbours that cannot be dialled; open = ours.
            lines.append("  back-links: \(b["carried"] ?? 0) carried (neighbours that cannot be dialled), \(b["open"] ?? 0) open to the nodes this one dials")
        }
        if !neighbours.isEmpty {
            lines.append("")
            let rows = neighbours.sorted { "\($0["endpoint"] ?? "")" < "\($1["endpoint"] ?? "")" }.map { n -> [String] in
                ["\(n["endpoint"] ?? "?")", "\(n["node"] ?? "?")", "\(n["public_key"] ?? "-")",
                 (n["leaf"] as? Bool) == true ? "yes" : "no",
                 (n["up_seconds"] as? Double).map { String(format: "%.1f s", $0) } ?? "?"]
            }
            lines += table(header: ["NEIGHBOUR", "NODE", "KEY", "LEAF", "UP FOR"], rows: rows).map { "  " + $0 }
        }
        if let c = obj["counters"] as? [String: Any] {
            lines.append("")
            let order = ["published", "delivered", "relayed", "duplicates", "ttl_expired", "over_ttl", "malformed", "refused", "rate_limited", "hwm_drops", "max_hops", "batches_sent", "batched_frames", "batches_in", "queue_full", "output_dropped"]
            lines.append("  " + order.filter { c[$0] != nil }.map { "\($0.replacingOccurrences(of: "_", with: "-")) \(c[$0] ?? 0)" }.joined(separator: "  "))
        }
        if let g = obj["grpc"] as? [String: Any] {
            lines.append("")
            let order = ["open_streams", "published", "rejected", "streamed", "overflows", "queue_bound"]
            lines.append("  gRPC bridge: " + order.map { "\($0.replacingOccurrences(of: "_", with: "-")) \(g[$0] ?? 0)" }.joined(separator: "  "))
        }
        Output.line(lines.joined(separator: "\n"))
    }
}

/// Columns as wide as their widest cell plus two spaces: nothing is cut, nothing runs together.
func table(header: [String], rows: [[String]]) -> [String] {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        var s = ""
        for (i, c) in cells.enumerated() {
            s += i == cells.count - 1 ? c : c.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0)
        }
        return s
    }
    return [line(header)] + rows.map(line)
}

struct Members: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every node a running node knows: key, endpoint, state, last heard, hops.",
        discussion: """
        States: self; alive (a neighbour, one hop); suspect (dials to it failed); gone (it said \
        BYE); known (learned from peer exchange, not a neighbour). Keys come with the endpoints \
        nodes advertise (KEY@tcp://…); "-" for a node that advertises none.
        """)
    @OptionGroup var node: NodeAddress
    @Flag(name: .long, help: "Print the raw JSON.") var json = false

    func run() throws {
        let reply = try node.request(["command": "members"])
        if json { return Output.line(jsonText(reply)) }
        let members = (reply["members"] as? [[String: Any]]) ?? []
        let rows = members.map { m -> [String] in
            ["\(m["public_key"] ?? "-")", "\(m["endpoint"] ?? "?")", "\(m["state"] ?? "?")",
             (m["last_heard_seconds"] as? Double).map { String(format: "%.1f s ago", $0) } ?? "-",
             (m["hops"] as? Int).map(String.init) ?? "-", "\(m["node"] ?? "-")"]
        }
        Output.line(table(header: ["KEY", "ENDPOINT", "STATE", "LAST HEARD", "HOPS", "NODE"], rows: rows).joined(separator: "\n"))
    }
}

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one message through a running node (its control socket), from its key.",
        discussion: """
        The message is a cunicu.signaling.Message in protobuf's canonical JSON, as an argument or \
        on stdin. Example:
          warren send --to "$(cat b.pub)" '{"credentials":{"ufrag":"a","pwd":"b"}}'
        """)
    @OptionGroup var node: NodeAddress
    @Option(name: .long, help: ArgumentHelp("The recipient's public key (base64), or community.", valueName: "KEY")) var to: String
    @Argument(help: "The message (JSON); none or -: read it from stdin.") var message: String?

    func run() throws {
        var text = message ?? "-"
        if text == "-" {
            var input = ""
            while let l = readLine(strippingNewline: false) { input += l }
            text = input
        }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else {
            throw RuntimeError("the message is not JSON")
        }
        _ = try node.request(["command": "send", "to": to, "message": obj])
    }
}
