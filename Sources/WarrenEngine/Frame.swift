/// A decoded Warren frame (see docs/PROTOCOL.md).
public struct Frame: Sendable {
    /// One entry of a peer list: a node and its advertised endpoint.
    public struct PeerEntry: Sendable, Hashable {
        public var nodeID: NodeID
        public var endpoint: String
        public init(nodeID: NodeID, endpoint: String) { self.nodeID = nodeID; self.endpoint = endpoint }
    }

    /// What the node that opens a link asks of the node it dials (HELLO flags bits 3–4; a node
    /// with views, flags bit 1, only). docs/PROTOCOL.md §6, "Views".
    public enum Request: UInt8, Sendable, Hashable {
        /// NEIGHBOR, low priority: take me if you have room (refused with DISCONNECT when full).
        case neighbour = 0
        /// NEIGHBOR, high priority (my active view is empty): take me, evicting one if full.
        case urgent = 1
        /// JOIN (to a seed): take me, evicting one if full, and walk FORWARD_JOINs for me.
        case join = 2
        /// The answer to a JOIN, a FORWARD_JOIN or a request that was taken: take me.
        case accept = 3
    }

    /// The body of a HELLO.
    public struct Hello: Sendable, Hashable {
        /// flags bit 0.
        public var leaf: Bool
        /// flags bit 1: the sender keeps bounded views and understands DISCONNECT and FORWARD_JOIN.
        public var views: Bool = false
        /// flags bits 3–4 (meaningful only with `views`).
        public var request: Request = .neighbour
        /// The sender's LinkID of the link this HELLO is sent on (never 0).
        public var token: UInt64
        /// A token of the receiver's that the sender saw (0 = none).
        public var echo: UInt64
        /// The sender's advertised listen endpoint.
        public var endpoint: String
        public var peers: [PeerEntry]
        /// flags bit 2: the sender takes routing frames (docs/PROTOCOL.md §9).
        public var routing = false
        /// flags bit 5: the link this HELLO is sent on is a routing contact link of the sender (not
        /// flooded to, not counted toward the degree); the receiver's link back is one too.
        public var contact = false
        public init(leaf: Bool, token: UInt64, echo: UInt64, endpoint: String, peers: [PeerEntry]) {
            self.leaf = leaf; self.token = token; self.echo = echo; self.endpoint = endpoint; self.peers = peers
        }

        /// The flags byte: bit 0 leaf, bit 1 views with its request in bits 3–4, bit 2 routing,
        /// bit 5 contact link.
        public var flags: UInt8 {
            (leaf ? 1 : 0) | (views ? 2 | request.rawValue << 3 : 0) | (routing ? 4 : 0) | (contact ? 32 : 0)
        }
    }

    public enum Kind: Sendable {
        /// `id` is BLAKE2b-128 of `envelope`, computed by the decoder (never on the wire).
        case data(topic: Topic, envelope: [UInt8], id: MessageID)
        case hello(Hello)
        case heartbeat
        case peers([PeerEntry])
        case bye
        /// DISCONNECT: the sender removes the receiver from its active view (or refuses it). `echo`
        /// is the receiver's token of its link to the sender (the id of that link), which proves
        /// the frame on a connection not bound yet.
        case disconnect(echo: UInt64)
        /// FORWARD_JOIN: a random walk for a newcomer `node`; `ttl` steps are left.
        case forwardJoin(ttl: UInt8, node: PeerEntry)
    }

    public var kind: Kind
    /// Hops this frame may still make, counting the hop it is on (DATA only; 0 for control).
    public var ttl: UInt8
    /// Hops already made before this one (DATA only; 0 for control).
    public var hops: UInt8
    /// The node that sent this frame on this link (previous hop).
    public var from: NodeID

    public init(kind: Kind, ttl: UInt8 = 0, hops: UInt8 = 0, from: NodeID) {
        self.kind = kind; self.ttl = ttl; self.hops = hops; self.from = from
    }

    /// A DATA frame; computes the message id.
    public static func data(topic: Topic, envelope: [UInt8], ttl: UInt8, hops: UInt8 = 0, from: NodeID) -> Frame {
        Frame(kind: .data(topic: topic, envelope: envelope, id: MessageID(envelope: envelope)),
              ttl: ttl, hops: hops, from: from)
    }

    public static let version: UInt8 = 1
    /// Bytes of the header every body starts with (`FrameHeader`).
    public static let headerSize = FrameHeader.size
    public static let maxPeers = 32
    public static let maxEndpointBytes = 255
    /// Largest body accepted (header + envelope): signaling envelopes are a few hundred bytes;
    /// 64 KiB leaves room for large peer descriptions. Larger bodies are malformed.
    public static let maxBodyBytes = 65_536

    /// Wire type codes.
    public enum TypeCode: UInt8, Sendable {
        case data = 1, hello = 2, heartbeat = 3, peers = 4, bye = 5
        // 6 is BATCH (`FrameBatch.typeCode`); 9 is reserved for SHUFFLE; 10–13 for routing.
        case disconnect = 7, forwardJoin = 8
    }

    public var typeCode: TypeCode {
        switch kind {
        case .data: .data
        case .hello: .hello
        case .heartbeat: .heartbeat
        case .peers: .peers
        case .bye: .bye
        case .disconnect: .disconnect
        case .forwardJoin: .forwardJoin
        }
    }
}

/// Why a frame could not be decoded.
public enum FrameError: Error, Sendable, Hashable {
    /// The topic part is not exactly 32 bytes.
    case badTopicLength(Int)
    /// The body is shorter than the 12-byte header.
    case shortHeader(Int)
    case unsupportedVersion(UInt8)
    case unknownType(UInt8)
    /// `from` is 0.
    case zeroNodeID
    /// A DATA frame with ttl 0.
    case zeroTTL
    /// A DATA frame on the control (all-zero) topic.
    case dataOnControlTopic
    /// A control frame on a non-zero topic.
    case controlOnDataTopic
    /// A control frame with ttl or hops ≠ 0.
    case controlTTLOrHops
    /// A DATA frame without envelope bytes.
    case emptyEnvelope
    /// A field runs past the end of the body.
    case truncated
    /// Bytes after a complete control frame.
    case trailingBytes(Int)
    /// An endpoint that is not valid UTF-8.
    case invalidUTF8
    /// An endpoint length outside 1…255.
    case badEndpointLength(Int)
    /// A peer list with more than 32 entries.
    case tooManyPeers(Int)
    /// A HELLO with token 0.
    case zeroToken
    /// A body larger than `Frame.maxBodyBytes`.
    case oversized(Int)
    /// A BATCH body given to the one-frame decoder (`FrameBatch.split` takes it apart).
    case batchBody
    /// A BATCH with no entries.
    case emptyBatch
    /// A BATCH entry that is itself a BATCH.
    case nestedBatch
    /// A BATCH with more than `FrameBatch.maxEntries` entries.
    case tooManyEntries
    /// A ROUTED frame whose mode is neither 0 (key) nor 1 (node).
    case badRouteMode(UInt8)
}
