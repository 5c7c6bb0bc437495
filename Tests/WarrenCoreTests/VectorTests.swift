import Foundation
import SwiftProtobuf
import Testing
@testable import WarrenCore

/// Vectors produced by an independent implementation (PyNaCl + Google's protobuf, see
/// tools/vectors): Warren must open the reference bytes and reproduce them exactly.
@Suite struct VectorTests {
    struct File: Decodable { var generator: String; var vectors: [Vector]; var community: [Community] }
    struct Vector: Decodable {
        var name, sender_private, sender_public, recipient_private, recipient_public, nonce, message_json, message, envelope: String
    }
    struct Community: Decodable { var passphrase, `private`, `public`: String }

    static func load() throws -> File {
        let url = try #require(Bundle.module.url(forResource: "envelopes", withExtension: "json", subdirectory: "Vectors"))
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }

    @Test func vectorsArePresent() throws {
        #expect(try Self.load().vectors.count >= 6)
    }

    @Test(arguments: try! VectorTests.load().vectors.map(\.name))
    func bothDirections(name: String) throws {
        let v = try #require(try Self.load().vectors.first { $0.name == name })
        let codec = EnvelopeCodec()
        let sender = try PrivateKey(base64: v.sender_private)
        let recipient = try PrivateKey(base64: v.recipient_private)
        #expect(sender.publicKey.base64 == v.sender_public)
        #expect(recipient.publicKey.base64 == v.recipient_public)
        let reference = try #require(Data(hexString: v.envelope))
        let message = try SignalingMessage(jsonString: v.message_json)
        #expect(Data(try message.serializedBytes() as [UInt8]).hex == v.message)

        // Warren opens the reference bytes.
        let (pair, opened) = try codec.open(Array(reference), with: recipient)
        #expect(pair.theirs == sender.publicKey)
        #expect(opened == message)

        // Warren's seal with the same nonce yields the same bytes.
        let nonce = try #require(Data(hexString: v.nonce))
        let sealed = try codec.sealBytes(message, from: sender, to: recipient.publicKey, nonce: Array(nonce))
        #expect(Data(sealed).hex == v.envelope)
    }

    @Test func communityKeys() throws {
        for c in try Self.load().community {
            let k = try PrivateKey.community(passphrase: c.passphrase)
            #expect(k.base64 == c.private, "passphrase \(c.passphrase)")
            #expect(k.publicKey.base64 == c.public)
        }
    }
}
