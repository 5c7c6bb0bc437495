/// Like `precondition`, but the message survives optimised builds, so a crash names the property.
@inline(__always)
public func require(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fatalError("property violated: " + message(), file: file, line: line) }
}
