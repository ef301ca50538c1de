"""Test-side helper for the OpenStack provider tests: makes and removes what a cloud user would
already have (network, subnet, external network, router), low-quota projects and a flavor no
host can take, and inspects what forgectl made, all through the real APIs with Python's
openstacksdk (an independent client, so the tests do not check forgectl with its own code).
Run with minicloud's Python; prints JSON on stdout."""
import json
import os
import sys

import openstack

CLOUD = os.environ.get('OS_CLOUD', 'minicloud')


def conn():
    return openstack.connect(cloud=CLOUD)


def setup(prefix, cidr):
    c = conn()
    # minicloud's default quotas (10 security groups per project) are below what the tests,
    # running side by side in one project, make together.
    project = c.current_project_id
    c.network.update_quota(project, security_groups=50, security_group_rules=500, ports=200,
                           floating_ips=50)
    c.set_compute_quotas(project, instances=40, cores=80, ram=102400)
    net = c.network.find_network(f'{prefix}-net') or c.network.create_network(
        name=f'{prefix}-net', shared=True)
    sub = c.network.find_subnet(f'{prefix}-sub') or c.network.create_subnet(
        name=f'{prefix}-sub', network_id=net.id, ip_version=4, cidr=cidr)
    ext = c.network.find_network(f'{prefix}-ext') or c.network.create_network(
        name=f'{prefix}-ext', is_router_external=True, provider_network_type='vxlan')
    if not c.network.find_subnet(f'{prefix}-extsub'):
        c.network.create_subnet(name=f'{prefix}-extsub', network_id=ext.id, ip_version=4,
                                cidr='203.0.113.0/24', enable_dhcp=False)
    rtr = c.network.find_router(f'{prefix}-rtr')
    if not rtr:
        rtr = c.network.create_router(name=f'{prefix}-rtr',
                                      external_gateway_info={'network_id': ext.id})
        c.network.add_interface_to_router(rtr, subnet_id=sub.id)
    print(json.dumps({'network': net.name, 'external': ext.name}))


def teardown(prefix):
    c = conn()
    rtr = c.network.find_router(f'{prefix}-rtr')
    sub = c.network.find_subnet(f'{prefix}-sub')
    if rtr:
        if sub:
            try:
                c.network.remove_interface_from_router(rtr, subnet_id=sub.id)
            except Exception as e:  # already gone
                print(f'remove interface: {e}', file=sys.stderr)
        c.network.update_router(rtr, external_gateway_info={})
        c.network.delete_router(rtr)
    for name in (f'{prefix}-net', f'{prefix}-ext'):
        n = c.network.find_network(name)
        if n:
            for p in c.network.ports(network_id=n.id):
                c.network.delete_port(p)
            c.network.delete_network(n)
    print('{}')


def tagged(cluster):
    """Everything in the project that carries the cluster's tag, metadata or names."""
    c = conn()
    tag = f'forgectl-cluster={cluster}'
    servers = []
    for s in c.compute.servers(details=True):
        if (s.metadata or {}).get('forgectl_cluster') == cluster:
            servers.append({'id': s.id, 'name': s.name, 'status': s.status, 'host': s.compute_host,
                            'machine': s.metadata.get('forgectl_machine'),
                            'tags': list(s.tags or []), 'key_name': s.key_name})
    groups = [{'name': g.name, 'policies': list(g.policies or [g.policy]),
               'members': list(g.member_ids or [])}
              for g in c.compute.server_groups() if g.name.startswith(f'forgectl-{cluster}-')]
    sgs = []
    for g in c.network.security_groups(project_id=c.current_project_id):
        if tag in (g.tags or []):
            rules = [r for r in g.security_group_rules if r['direction'] == 'ingress']
            sgs.append({'name': g.name, 'ingress_rules': len(rules),
                        'protocols': sorted({str(r.get('protocol')) for r in rules}),
                        'undocumented': [r['id'] for r in rules if not r.get('description')]})
    ports = [{'name': p.name, 'device_id': p.device_id, 'ips': [i['ip_address'] for i in p.fixed_ips],
              'allowed': [a['ip_address'] for a in (p.allowed_address_pairs or [])]}
             for p in c.network.ports(tags=[tag])]
    fips = [{'address': f.floating_ip_address, 'port_id': f.port_id}
            for f in c.network.ips(project_id=c.current_project_id) if tag in (f.tags or [])]
    vols = [{'name': v.name, 'status': v.status, 'size': v.size,
             'attached_to': [a['server_id'] for a in v.attachments]}
            for v in c.block_storage.volumes(details=True)
            if (v.metadata or {}).get('forgectl_cluster') == cluster]
    kps = [k.name for k in c.compute.keypairs() if k.name == f'forgectl-{cluster}']
    print(json.dumps({'servers': servers, 'server_groups': groups, 'security_groups': sgs,
                      'ports': ports, 'floating_ips': fips, 'volumes': vols, 'keypairs': kps}))


def quota_project(name, instances, clouds_out):
    """A project where the admin user works, with a low instance quota, and a clouds.yaml for it."""
    c = conn()
    project = c.identity.find_project(name) or c.identity.create_project(name=name, domain_id='default')
    user = c.identity.find_user('admin', domain_id='default')
    role = c.identity.find_role('admin')
    c.identity.assign_project_role_to_user(project, user, role)
    c.set_compute_quotas(project.id, instances=int(instances))
    auth = dict(c.config.config['auth'])
    auth['project_name'] = name
    auth.pop('project_id', None)
    cloud = {'auth': auth, 'region_name': c.config.config.get('region_name', 'RegionOne'),
             'interface': 'public', 'identity_api_version': 3}
    with open(clouds_out, 'w') as f:
        json.dump({'clouds': {'forgectl-quota': cloud}}, f)
    print(json.dumps({'project': project.id}))


def drop_project(name):
    c = conn()
    p = c.identity.find_project(name)
    if p:
        c.identity.delete_project(p)
    print('{}')


def error_flavor(name):
    """A flavor that passes every check but that no host can take (a trait nobody has)."""
    c = conn()
    f = c.compute.find_flavor(name) or c.compute.create_flavor(name=name, ram=256, vcpus=1, disk=1)
    c.compute.create_flavor_extra_specs(f, {'trait:CUSTOM_FORGECTL_NO_SUCH_HOST': 'required'})
    print(json.dumps({'flavor': f.id}))


def drop_flavor(name):
    c = conn()
    f = c.compute.find_flavor(name)
    if f:
        c.compute.delete_flavor(f)
    print('{}')


if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    {'setup': setup, 'teardown': teardown, 'tagged': tagged, 'quota-project': quota_project,
     'drop-project': drop_project, 'error-flavor': error_flavor, 'drop-flavor': drop_flavor}[cmd](*args)
