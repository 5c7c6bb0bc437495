import Logging
import WarrenEngine

extension GossipNode {
    /// A node on an in-memory hub (tests: no sockets): the same engine, driver loop and command
    /// queue as on ZeroMQ, over a `MemoryTransport` bound at `configuration.listen` (a name on
    /// the hub, e.g. `tcp://10.0.0.1:7001`; no port is chosen for `*`). `peers` are dialled on
    /// the hub; discovery, ZAP and the allow-list's handshakes do not exist there.
    package convenience init(configuration: GossipConfiguration, hub: MemoryHub, callbacks: GossipNodeCallbacks,
                             logger: Logger, start: Bool = true) throws {
        try configuration.validate()
        var seedRNG = SystemRandomNumberGenerator()
        let nodeID = NodeID.random(using: &seedRNG)
        let endpoint = configuration.advertise ?? configuration.listen
        let transport = try MemoryTransport(hub: hub, endpoint: endpoint, sendHighWaterMark: configuration.sendHighWaterMark,
                                            receiveHighWaterMark: configuration.receiveHighWaterMark)
        let wakeup = transport.wakeup
        var c = configuration
        c.discoveryPort = nil
        try self.init(transport: transport, wakeup: wakeup, nodeID: nodeID, endpoint: endpoint, backlinkEndpoint: nil,
                      zapDomain: nil, configuration: c, callbacks: callbacks, logger: logger, start: start)
    }
}
