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

    /// A signature computed piece by piece: the sender's thread signs the payload, the
    /// connection adds its seal.
    public struct Signer: @unchecked Sendable {
        // HMAC's state is a plain value (no shared references): copying it forks the signature.
        private var mac: HMAC<SHA256>
        init(key: SymmetricKey) { mac = HMAC<SHA256>(key: key) }
        public mutating func update(_ bytes: [UInt8]) { mac.update(data: bytes) }
        public func finalize() -> [UInt8] { Array(mac.finalize()) }
    }

    public func signer() -> Signer { Signer(key: key) }

    public func verify(_ signed: ArraySlice<UInt8>, _ tag: ArraySlice<UInt8>) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(Array(tag), authenticating: Array(signed), using: key)
    }
}
