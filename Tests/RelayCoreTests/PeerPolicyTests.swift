import RelayCore
import STUN
import Testing

@Suite struct PeerPolicyTests {
    static let special = [
        "0.0.0.0", "0.1.2.3", "10.1.2.3", "100.64.0.1", "100.127.255.254", "127.0.0.1", "127.255.255.254",
        "169.254.169.254", "169.254.0.1", "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.88.99.1",
        "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250",
        "240.0.0.1", "255.255.255.255", "::", "::1", "fe80::1", "febf::1", "fc00::1", "fd12:3456::1", "ff02::1",
        "ff05::1:3", "2001:db8::1", "2001:2::1", "100::1", "fec0::1", "3fff::1", "64:ff9b:1::1", "168.63.129.16",
    ]

    /// The IPv6 spellings of IPv4 loopback and of the metadata address: each must be judged by the IPv4 inside.
    static let bypasses = [
        "::ffff:127.0.0.1",  // IPv4-mapped
        "::ffff:7f00:1",  // the same, in hex
        "::127.0.0.1",  // IPv4-compatible
        "64:ff9b::127.0.0.1",  // NAT64 well-known prefix
        "64:ff9b::a9fe:a9fe",  // NAT64 of 169.254.169.254
        "2002:7f00:1::1",  // 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  // 6to4 of 169.254.169.254
        "2002:c0a8:101::1",  // 6to4 of 192.168.1.1
        "2001:0:7f00:1::1",  // Teredo, server 127.0.0.1
        "2001:0:808:808:0:0:80ff:fffe",  // Teredo, client ~0x80fffffe = 127.0.0.1
        "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    ]

    static let global = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888", "2002:808:808::1"]

    @Test(arguments: special + bypasses)
    func specialPurposeAddressesAreRefusedByDefault(address: String) throws {
        let ip = try #require(IPAddress(address))
        #expect(!PeerPolicy().permits(ip), "\(address)")
    }

    @Test(arguments: global)
    func globalAddressesArePermitted(address: String) throws {
        #expect(PeerPolicy().permits(try #require(IPAddress(address))), "\(address)")
    }

    @Test func allowingLoopbackAllowsItInEveryFormButNothingElse() throws {
        let policy = PeerPolicy(allowed: [CIDR("127.0.0.0/8")!])
        for address in ["127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"] {
            #expect(policy.permits(IPAddress(address)!), "\(address)")
        }
        for address in ["10.0.0.1", "::1", "::ffff:10.0.0.1", "169.254.169.254", "::127.0.0.1"] {
            #expect(!policy.permits(IPAddress(address)!), "\(address)")
        }
        let denied = PeerPolicy(denied: [CIDR("8.8.8.0/24")!])
        #expect(!denied.permits(IPAddress("8.8.8.8")!) && !denied.permits(IPAddress("::ffff:8.8.8.8")!))
        #expect(denied.permits(IPAddress("8.8.4.4")!))
    }

    @Test func theServerAnswers403ForEveryBypassForm() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        #expect(client.allocate(on: &server)?.isSuccess == true)
        for address in Self.bypasses + ["127.0.0.1", "10.0.0.1", "169.254.169.254"] {
            #expect(client.call(.createPermission, [], peers: [peer(address)], on: &server)?.code == 403, "\(address)")
            #expect(
                client.call(.channelBind, [.channelNumber(0x4000)], peers: [peer(address)], on: &server)?.code == 403,
                "\(address)")
        }
        // Allowed explicitly, loopback works (as the interop tests need).
        var allowing = TURNServer(configuration: configuration(allowed: ["127.0.0.0/8"]))
        var local = Client()
        #expect(local.allocate(on: &allowing)?.isSuccess == true)
        #expect(local.call(.createPermission, [], peers: [peer("127.0.0.1")], on: &allowing)?.isSuccess == true)
    }
}
