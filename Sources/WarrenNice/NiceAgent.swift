import WarrenSession

/// An ICE agent backed by libnice (RFC 5245 compatibility with trickle and consent freshness):
/// one stream with one component, on its factory's GLib thread.
///
/// Every method returns at once: the call runs later on the GLib thread, in the order made.
/// Events reach the closure given to `NiceAgentFactory.makeAgent` on that thread, in order,
/// until `.closed`; after `close()` nothing but `.closed` is reported. Dropping the last
/// reference closes the agent too.
public final class NiceAgent: ICEAgent {
    private let core: NiceAgentCore

    init(core: NiceAgentCore) {
        self.core = core
    }

    deinit {
        core.close()
    }

    public func setRemoteCredentials(_ credentials: ICECredentials) {
        core.setRemoteCredentials(credentials)
    }

    public func startGathering() {
        core.startGathering()
    }

    /// Invalid candidates (names instead of numeric addresses, ports outside 0–65535, foundations
    /// over 32 bytes, components other than 1, TCP without a tcptype) are ignored with a warning.
    public func addRemoteCandidate(_ candidate: ICECandidate) {
        core.addRemoteCandidate(candidate)
    }

    /// True when the datagram was sent or queued for the GLib thread: a pair is selected, the
    /// component has not failed, and the agent is not closing.
    @discardableResult
    public func send(_ datagram: [UInt8]) -> Bool {
        core.send(datagram)
    }

    public func close() {
        core.close()
    }
}
