import Testing
@testable import TidemarkNet

/// The client key per-client limits use: an IPv6 client counts by its /64, which a single
/// host commonly holds whole.
@Suite struct TCPAddressTests {
    private func ipv6(_ groups: [UInt16]) -> [UInt8] { groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] } }

    @Test func ipv6ClientsInOneSlash64AreOneClient() {
        let one = TCPAddress.clientKey(ipv6: ipv6([0x2001, 0xdb8, 1, 2, 0xaaaa, 0xbbbb, 0xcccc, 0xdddd]))
        let other = TCPAddress.clientKey(ipv6: ipv6([0x2001, 0xdb8, 1, 2, 0, 0, 0, 1]))
        #expect(one == "2001:db8:1:2::/64" && other == one)
        #expect(TCPAddress.clientKey(ipv6: ipv6([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1])) == "2001:db8:1:3::/64")
        #expect(TCPAddress.clientKey(ipv6: ipv6([0, 0, 0, 0, 0, 0, 0, 1])) == "::/64")
    }

    @Test func ipv4ClientsKeepTheirWholeAddressAlsoWhenMapped() {
        #expect(TCPAddress.clientKey(ipv4: [192, 0, 2, 7]) == "192.0.2.7")
        #expect(TCPAddress.clientKey(ipv6: ipv6([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0207])) == "192.0.2.7")
        #expect(TCPAddress.clientKey(ipv6: ipv6([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0208])) == "192.0.2.8")
    }
}
