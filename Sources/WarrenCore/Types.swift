/// cunīcu's wire types under the names the rest of Warren uses.
public typealias SignalingMessage = Cunicu_Signaling_Message
public typealias Envelope = Cunicu_Signaling_Envelope
public typealias EncryptedMessage = Cunicu_Signaling_EncryptedMessage
public typealias BackendType = Cunicu_Signaling_BackendType
