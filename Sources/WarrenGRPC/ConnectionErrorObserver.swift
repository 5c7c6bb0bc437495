import NIOCore
import NIOHTTP2

/// Sits after swift-nio-http2's handler on each bridge connection and reports the errors for
/// which it closes the connection with GOAWAY — a client that opens more streams than the
/// advertised limit, or breaks its rapid-reset and other denial-of-service rules. Those closes
/// fail every call on the connection; without this they would be silent on the server.
final class ConnectionErrorObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame

    private let report: @Sendable (_ why: String, _ error: any Error, _ peer: String) -> Void

    init(report: @escaping @Sendable (_ why: String, _ error: any Error, _ peer: String) -> Void) {
        self.report = report
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let why = Self.closesConnection(error) {
            report(why, error, context.channel.remoteAddress.map { "\($0)" } ?? "unknown")
        }
        context.fireErrorCaught(error)
    }

    /// Why swift-nio-http2 closes the connection for `error`, or nil when it does not (a stream
    /// error ends one stream only).
    static func closesConnection(_ error: any Error) -> String? {
        switch error {
        case is NIOHTTP2Errors.MaxStreamsViolation:
            return "the client opened more concurrent streams than the advertised limit"
        case is NIOHTTP2Errors.ExcessiveRSTFrames:
            return "the client cancelled more than 200 streams within 30 s (rapid-reset rule)"
        case is NIOHTTP2Errors.ExcessiveNumberOfGlitches, is NIOHTTP2Errors.ExcessiveStreamErrors:
            return "too many stream errors on the connection"
        case is NIOHTTP2Errors.ExcessiveControlFrames:
            return "too many PING/SETTINGS/PRIORITY frames"
        case is NIOHTTP2Errors.ExcessiveEmptyDataFrames, is NIOHTTP2Errors.ExcessiveContinuationFrames:
            return "too many empty DATA or CONTINUATION frames"
        default:
            return nil
        }
    }
}
