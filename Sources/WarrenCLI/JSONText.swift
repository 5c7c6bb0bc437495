import Foundation
import WarrenCore

/// `s` as a JSON string literal (quotes and escapes; slashes left alone).
package func jsonString(_ s: String) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed, .withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
    let arr = String(decoding: data, as: UTF8.self)
    return String(arr.dropFirst().dropLast())
}

/// One message as the JSON line of `warren open` and `warren node`'s stdout:
/// `{"sender":…,"recipient":…,"message":{…}}` (the message in protobuf's canonical JSON).
package func jsonLine(sender: Key, recipient: Key, message: SignalingMessage) throws -> String {
    "{\"sender\":\"\(sender.base64)\",\"recipient\":\"\(recipient.base64)\",\"message\":\(try message.jsonString())}"
}
