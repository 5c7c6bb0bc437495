// libFuzzer target: the frame decoder (Frame+Codec.swift). Input layout (docs/FUZZING.md):
//   byte 0 selects the topic: 0 control (32 × 00), 1 a data topic (32 × 11), 2 the next 32 input
//   bytes, 3 a topic of length (byte 1 % 64) taken from the input; the rest is the body.
// Properties: decoding never traps; a decoded frame re-encodes to exactly the input (the
// decoder accepts only canonical bodies; HELLO flag bits other than bit 0 are ignored on
// receive and written as 0) on the same topic; DATA ids are BLAKE2b-128 of the envelope; the
// generic-collection entry point agrees with the contiguous one. A BATCH body that splits
// re-encodes from its entries to exactly the input, and every entry is checked as a frame.
import FuzzSupport
import Warren

/// The libFuzzer callback (see Main.swift).
func fuzzFrame(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let mode = input.first else { return 0 }
    var rest = input.dropFirst()
    let topic: [UInt8]
    switch mode % 4 {
    case 0: topic = Array(repeating: 0, count: 32)
    case 1: topic = Array(repeating: 0x11, count: 32)
    case 2:
        guard rest.count >= 32 else { return 0 }
        topic = Array(rest.prefix(32)); rest = rest.dropFirst(32)
    default:
        guard let n = rest.first else { return 0 }
        rest = rest.dropFirst()
        topic = Array(rest.prefix(Int(n % 64))); rest = rest.dropFirst(Int(n % 64))
    }
    let body = Array(rest)

    let result = Result { () throws(FrameError) -> Frame in try Frame.decode(topic: topic, body: body) }
    // The same bytes through a non-contiguous collection take the copying path: same answer.
    let viaCopy = Result { () throws(FrameError) -> Frame in
        try Frame.decode(topic: topic.lazy.map { $0 }, body: body.lazy.map { $0 })
    }
    switch (result, viaCopy) {
    case (.failure(let a), .failure(let b)):
        require(a == b, "decode paths disagree: \(a) vs \(b)")
        if a == .batchBody { checkBatch(topic: topic, body: body) }
        return 0
    case (.success(let f), .success(let g)):
        require(f.encode().body == g.encode().body, "decode paths disagree")
        check(f, topic: topic, body: body)
    default:
        fatalError("decode paths disagree on acceptance: \(result) vs \(viaCopy)")
    }
    return 0
}

func check(_ f: Frame, topic: [UInt8], body: [UInt8]) {
    let out = f.encode()
    require(out.topic.bytes == topic, "re-encoded topic differs")
    var expected = body
    if case .hello = f.kind { expected[Frame.headerSize] &= 1 }   // flags: only bit 0 is kept
    require(out.body == expected, "re-encoding differs from the accepted input")
    switch f.kind {
    case .data(let t, let envelope, let id):
        require(!t.isControl && f.ttl >= 1 && !envelope.isEmpty, "invalid DATA accepted")
        require(id == MessageID(envelope: envelope), "id is not BLAKE2b-128 of the envelope")
    case .hello(let h):
        require(h.token != 0 && Frame.isEncodable(endpoint: h.endpoint) && h.peers.count <= Frame.maxPeers, "invalid HELLO accepted")
    case .peers(let list):
        require(list.count <= Frame.maxPeers && list.allSatisfy { $0.nodeID.raw != 0 }, "invalid PEERS accepted")
    case .heartbeat, .bye:
        require(body.count == Frame.headerSize, "trailing bytes accepted")
    }
    require(f.from.raw != 0 && body.count <= Frame.maxBodyBytes, "zero from or oversized body accepted")
}

/// A BATCH body: split, it re-encodes to the input; each entry decodes (or fails) like a frame.
func checkBatch(topic: [UInt8], body: [UInt8]) {
    guard case .success(let entries) = FrameBatch.decode(body) else { return }
    require(!entries.isEmpty, "an empty batch was accepted")
    var from: UInt64 = 0
    for k in 4..<12 { from = from << 8 | UInt64(body[k]) }
    require(FrameBatch.encode(entries, from: NodeID(raw: from)) == body, "batch re-encoding differs from the input")
    for e in entries {
        require(e.count >= Frame.headerSize && e[1] != FrameBatch.typeCode, "invalid batch entry accepted")
        if let f = try? Frame.decode(topic: topic, body: e) { check(f, topic: topic, body: e) }
    }
}
