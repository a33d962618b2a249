import Crypto

/// Signs and checks internal RPC frames with the cluster secret (HMAC-SHA256), so only
/// nodes of the same cluster are heard.
public struct FrameAuthenticator: Sendable {
    private let key: SymmetricKey

    public init(clusterSecret: String) {
        precondition(!clusterSecret.isEmpty, "a cluster secret is required")
        key = SymmetricKey(data: SHA256.hash(data: Array(clusterSecret.utf8)))
    }

    public func sign(_ bytes: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: bytes, using: key))
    }

    public func verify(_ signed: ArraySlice<UInt8>, _ tag: ArraySlice<UInt8>) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(Array(tag), authenticating: Array(signed), using: key)
    }
}
