import ArgumentParser
import Foundation

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running node's neighbours and counters (from its --metrics address).",
        discussion: "Example: warren node … --metrics 127.0.0.1:9100 &  warren status --metrics 127.0.0.1:9100")
    @Option(name: .long, help: ArgumentHelp("The node's --metrics address.", valueName: "HOST:PORT")) var metrics: String
    @Flag(name: .long, help: "Print the raw JSON from /status.") var json = false

    func run() throws {
        let body: String
        do { body = try httpGet(metrics, path: "/status") } catch { throw ValidationError("\(error)") }
        if json { print(body, terminator: ""); return }
        guard let obj = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw ValidationError("unexpected /status reply: \(body.prefix(200))")
        }
        let neighbours = (obj["neighbours"] as? [[String: Any]]) ?? []
        let known = (obj["known_endpoints"] as? [String]) ?? []
        print("node \(obj["endpoint"] ?? "?") (\(obj["node"] ?? "?"))")
        print("  \(neighbours.count) neighbours, \(known.count) known endpoints, \(obj["dedup_entries"] ?? 0) ids in the de-dup cache")
        if !neighbours.isEmpty {
            print("")
            print("  " + "NEIGHBOUR".padding(toLength: 40, withPad: " ", startingAt: 0) + "NODE".padding(toLength: 24, withPad: " ", startingAt: 0) + "LEAF  UP FOR")
            for n in neighbours.sorted(by: { "\($0["endpoint"] ?? "")" < "\($1["endpoint"] ?? "")" }) {
                let ep = "\(n["endpoint"] ?? "?")", node = "\(n["node"] ?? "?")"
                let leaf = (n["leaf"] as? Bool) == true ? "yes " : "no  "
                let up = (n["up_seconds"] as? Double).map { String(format: "%.1f s", $0) } ?? "?"
                print("  " + ep.padding(toLength: 40, withPad: " ", startingAt: 0) + node.padding(toLength: 24, withPad: " ", startingAt: 0) + leaf + "  " + up)
            }
        }
        if let c = obj["counters"] as? [String: Any] {
            print("")
            let order = ["published", "delivered", "relayed", "duplicates", "ttl_expired", "over_ttl", "malformed", "refused", "rate_limited", "hwm_drops", "max_hops", "batches_sent", "batched_frames", "batches_in"]
            print("  " + order.map { "\($0.replacingOccurrences(of: "_", with: "-")) \(c[$0] ?? 0)" }.joined(separator: "  "))
        }
        if let g = obj["grpc"] as? [String: Any] {
            print("")
            let order = ["open_streams", "published", "rejected", "streamed", "overflows", "queue_bound"]
            print("  gRPC bridge: " + order.map { "\($0.replacingOccurrences(of: "_", with: "-")) \(g[$0] ?? 0)" }.joined(separator: "  "))
        }
    }
}
